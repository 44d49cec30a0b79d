"""Where the daemon's memory goes at import time (issue 10.1): RSS, PSS and Python allocations per
dependency for the modules `raftpg run` loads.

Each figure comes from a fresh interpreter that imports a list of modules and reports its RSS and
PSS (/proc/self/smaps_rollup), the bytes tracemalloc saw allocated (a second run with tracemalloc,
so its own overhead stays out of the RSS) and the import time:
- `cumulative`: first what the daemon needs (the standard library, each third-party package,
  raftpg's daemon modules), then what it loads without needing it (see `daemon only`), one row per
  top-level package; each row's delta is what it adds on top of every row before it, so the rows
  add up to the total;
- `alone`: each third-party package's modules (those the daemon loads) in a bare interpreter;
- `daemon only`: what `raftpg.cli.daemon` and `raftpg.cli.logs` load without
  `raftpg.cli.main.build_parser` (which imports the command-line tools the daemon never uses), and
  what that saves.

Usage: python3 -m benchmarks.import_footprint [--out benchmarks/results/import-footprint.json]
Starts no cluster.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# `raftpg run` builds the whole command line (build_parser imports ctl, demo and certs_cmd for
# their subcommands) before it imports the daemon.
DAEMON_ENTRY = ("call:raftpg.cli.main:build_parser", "raftpg.cli.daemon", "raftpg.cli.logs")
DAEMON_ONLY_ENTRY = ("raftpg.cli.daemon", "raftpg.cli.logs")
BASE_MODULES = frozenset(("sitecustomize", "__main__"))

CHILD = r"""
import importlib, json, os, sys, time
trace = sys.argv[1] == "trace"
if trace:
    import tracemalloc
    tracemalloc.start()
before = set(sys.modules)
started = time.perf_counter()
for name in sys.argv[2:]:
    try:
        if name.startswith("call:"):
            module, function = name[5:].split(":")
            getattr(importlib.import_module(module), function)()
        else:
            importlib.import_module(name)
    except Exception:
        pass
elapsed = time.perf_counter() - started
fields = {}
with open("/proc/self/smaps_rollup") as f:
    for line in f:
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            fields[key] = int(rest.split()[0]) / 1024
out = {"rss": fields["Rss"], "pss": fields["Pss"], "seconds": elapsed,
       "modules": [m for m in sys.modules if m not in before]}
if trace:
    out["traced"] = tracemalloc.get_traced_memory()[0] / 2**20
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Measure:
    rss_mib: float
    pss_mib: float
    traced_mib: float
    import_s: float
    modules: int


def _child(modules: list[str], trace: bool) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CHILD, "trace" if trace else "plain", *modules],
                          capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(modules: list[str], repeat: int, *, trace: bool = True) -> tuple[Measure, list[str]]:
    """The smallest RSS of `repeat` plain runs (the least disturbed by other load), and the bytes
    allocated in one traced run (skipped without `trace`: tracemalloc slows imports down a lot).
    Also returns the modules loaded, in import order."""
    plain = min((_child(modules, trace=False) for _ in range(repeat)), key=lambda r: float(r["rss"]))
    traced = _child(modules, trace=True)["traced"] if trace else 0.0
    loaded = [m for m in plain["modules"] if m not in BASE_MODULES]
    return Measure(round(plain["rss"], 1), round(plain["pss"], 1), round(traced, 1),
                   round(plain["seconds"], 3), len(loaded)), loaded


def _top(module: str) -> str:
    return module.split(".")[0]


def _package_order(modules: list[str]) -> list[str]:
    order: list[str] = []
    for module in modules:
        if _top(module) not in order:
            order.append(_top(module))
    return order


def _delta(after: Measure, before: Measure) -> dict[str, float]:
    return {"rss_mib": round(after.rss_mib - before.rss_mib, 1), "pss_mib": round(after.pss_mib - before.pss_mib, 1),
            "traced_mib": round(after.traced_mib - before.traced_mib, 1),
            "import_s": round(after.import_s - before.import_s, 3), "modules": after.modules - before.modules}


def totals(repeat: int, *, trace: bool = True) -> dict[str, Any]:
    """Bare interpreter, the daemon's imports, and the daemon's without build_parser's."""
    bare, _ = measure([], repeat, trace=trace)
    everything, daemon = measure(list(DAEMON_ENTRY), repeat, trace=trace)
    lean, only = measure(list(DAEMON_ONLY_ENTRY), repeat, trace=trace)
    unneeded = [m for m in daemon if m not in set(only)]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "python": sys.version.split()[0],
        "bare_interpreter": asdict(bare), "daemon_imports": asdict(everything), "daemon_modules": daemon,
        "daemon_only": {**asdict(lean), "saving": _delta(everything, lean), "modules_list": only,
                        "unneeded_packages": sorted({_top(m) for m in unneeded if not _is_stdlib(m)} - {"raftpg"}),
                        "unneeded_raftpg_modules": sorted(m for m in unneeded if m.startswith("raftpg"))},
    }


def _is_stdlib(module: str) -> bool:
    return _top(module) in sys.stdlib_module_names or _top(module).startswith("_")


def run(repeat: int) -> dict[str, Any]:
    """totals() plus the cumulative and the per-package rows."""
    result = totals(repeat)
    bare = Measure(**result["bare_interpreter"])
    daemon: list[str] = result["daemon_modules"]
    only: list[str] = result["daemon_only"]["modules_list"]
    unneeded = [m for m in daemon if m not in set(only)]
    packages = [p for p in _package_order(daemon) if not _is_stdlib(p)]
    # stdlib first (as one row): every third-party row is then what the package itself costs.
    steps = [("stdlib", [m for m in only if _is_stdlib(m)])]
    steps += [(p, [m for m in only if _top(m) == p]) for p in packages if p != "raftpg"]
    steps.append(("raftpg (daemon)", [m for m in only if _top(m) == "raftpg"]))
    steps += [(f"unneeded: {p}", [m for m in unneeded if _top(m) == p]) for p in _package_order(unneeded)
              if not _is_stdlib(p)]
    steps.append(("unneeded: stdlib", [m for m in unneeded if _is_stdlib(m)]))
    cumulative: list[dict[str, Any]] = []
    previous = bare
    included: list[str] = []
    for name, modules in [(n, m) for n, m in steps if m]:
        included += modules
        now, _ = measure(included, repeat)
        cumulative.append({"package": name, **_delta(now, previous), "total_rss_mib": now.rss_mib})
        previous = now
    alone = []
    for package in packages:
        if package == "raftpg":
            continue
        now, pulled = measure([m for m in daemon if _top(m) == package], repeat)
        alone.append({"package": package, **_delta(now, bare),
                      "drags_in": sorted({_top(m) for m in pulled if not _is_stdlib(m)} - {package})})
    return {**result, "cumulative": cumulative, "alone": alone}


def _print(result: dict[str, Any]) -> None:
    print(f"bare interpreter RSS {result['bare_interpreter']['rss_mib']} MiB; after the daemon's imports "
          f"{result['daemon_imports']['rss_mib']} MiB ({result['daemon_imports']['modules']} modules)")
    print(f"{'package':<28} {'+RSS':>6} {'+PSS':>6} {'+traced':>8} {'+import s':>9} {'+mods':>6}  (cumulative)")
    for row in result.get("cumulative", []):
        print(f"{row['package']:<28} {row['rss_mib']:>6} {row['pss_mib']:>6} {row['traced_mib']:>8} "
              f"{row['import_s']:>9} {row['modules']:>6}")
    print(f"\n{'package alone':<18} {'+RSS':>6} {'+traced':>8} {'+import s':>9}  drags in")
    for row in result.get("alone", []):
        print(f"{row['package']:<18} {row['rss_mib']:>6} {row['traced_mib']:>8} {row['import_s']:>9}  "
              f"{', '.join(row['drags_in'])}")
    only = result["daemon_only"]
    print(f"\nwithout build_parser's imports: {only['rss_mib']} MiB, saving {only['saving']['rss_mib']} MiB RSS, "
          f"{only['saving']['modules']} modules: {', '.join(only['unneeded_packages'])} and "
          f"{len(only['unneeded_raftpg_modules'])} raftpg modules")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="plain runs per row (the smallest RSS counts)")
    parser.add_argument("--quick", action="store_true",
                        help="the totals only: no per-package rows, no tracemalloc runs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = totals(args.repeat, trace=False) if args.quick else run(args.repeat)
    _print(result)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
