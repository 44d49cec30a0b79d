"""The README's Performance table in one run (issue 10.6): raftpg and Patroni + etcd, one after the
other on this machine, through the shared failover_bench.py and each side's adapter.

    python3 -m benchmarks.side_by_side [--switchovers 3] [--failovers 3] [--only raftpg patroni] [--dry-run]

Scenarios: raftpg at ttl 5 / loop_wait 1 / retry 2 (asynchronous, and `synchronous_mode: quorum`)
and Patroni 4.1 + etcd at ttl 20 / loop_wait 1 / retry 3, the lowest ttl Patroni accepts. Each
writes benchmarks/results/side-by-side-<label>.json; the table goes to
benchmarks/results/side-by-side.md with the date and commit. Run from the repository root, as root,
under the cluster lock (the benchmark starts clusters). --dry-run prints the commands only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SHARED_BENCH = Path("/work/shared/bench")
RUN_TIMEOUT = 3600.0  # one scenario; failover_bench bounds every step itself
SETUP_TIMEOUT = 900.0
PATRONI_ADAPTER = f"bash {SHARED_BENCH / 'patroni_cluster.sh'}"


@dataclass(frozen=True)
class Scenario:
    label: str
    title: str  # the table's column heading
    adapter: str
    env: Mapping[str, str]
    setup: tuple[str, ...] = ()  # run once before the benchmark (installs what the adapter needs)


SCENARIOS = (
    Scenario("raftpg", "raftpg ttl 5 (loop_wait 1, retry 2)", f"{sys.executable} -m benchmarks.raftpg_adapter",
             {"TTL": "5", "LOOP_WAIT": "1", "RETRY_TIMEOUT": "2", "SYNC_MODE": "off"}),
    Scenario("raftpg-quorum", "raftpg ttl 5, `synchronous_mode: quorum`",
             f"{sys.executable} -m benchmarks.raftpg_adapter",
             {"TTL": "5", "LOOP_WAIT": "1", "RETRY_TIMEOUT": "2", "SYNC_MODE": "quorum"}),
    Scenario("patroni", "Patroni 4.1 + etcd ttl 20 (loop_wait 1, retry 3; the lowest ttl it accepts)",
             PATRONI_ADAPTER, {"TTL": "20", "LOOP_WAIT": "1", "RETRY_TIMEOUT": "3", "SYNC_MODE": "off"},
             setup=(*shlex.split(PATRONI_ADAPTER), "setup")),
)


@dataclass(frozen=True)
class Rounds:
    switchovers: int
    failovers: int
    idle_seconds: int
    rest_seconds: int


def result_path(scenario: Scenario) -> Path:
    return RESULTS / f"side-by-side-{scenario.label}.json"


def bench_command(scenario: Scenario, rounds: Rounds, bench: Path) -> list[str]:
    env = [arg for key, value in scenario.env.items() for arg in ("--env", f"{key}={value}")]
    return [sys.executable, str(bench), "--adapter", scenario.adapter, *env, "--label", scenario.label,
            "--switchovers", str(rounds.switchovers), "--failovers", str(rounds.failovers),
            "--idle-seconds", str(rounds.idle_seconds), "--rest-seconds", str(rounds.rest_seconds),
            "--out", str(result_path(scenario))]


def stop_command(scenario: Scenario) -> list[str]:
    return [*shlex.split(scenario.adapter), "stop"]


def run_scenario(scenario: Scenario, rounds: Rounds, bench: Path) -> bool:
    """Run one scenario; whatever happens, the adapter's `stop` runs after it."""
    env = {**os.environ, **scenario.env}
    result_path(scenario).unlink(missing_ok=True)  # never tabulate an older run's figures
    try:
        if scenario.setup:
            subprocess.run(list(scenario.setup), cwd=REPO, env=env, timeout=SETUP_TIMEOUT, check=True)
        done = subprocess.run(bench_command(scenario, rounds, bench), cwd=REPO, timeout=RUN_TIMEOUT, check=False)
        return done.returncode == 0 and result_path(scenario).exists()
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"{scenario.label}: {exc}", file=sys.stderr)
        return False
    finally:
        subprocess.run(stop_command(scenario), cwd=REPO, env=env, timeout=300, check=False)


# ---------------------------------------------------------------------------------- the table

def _spread(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    return f"{min(present):.2f} / {statistics.median(present):.2f} / {max(present):.2f} s"


def _ok_windows(result: Mapping[str, Any], kind: str) -> list[float | None]:
    return [trial.get("unavailability_s") for trial in result.get(kind) or [] if trial.get("result") == "ok"]


def _kinds(result: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """The footprint's processes grouped by kind: 'raftpg-node1' and 'raftpg-node2' are both raftpg."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for label, process in ((result.get("footprint") or {}).get("processes") or {}).items():
        kind = label.rsplit("-node", 1)[0] if "-node" in label else label
        groups.setdefault(kind, []).append(process)
    return groups


def _memory(result: Mapping[str, Any]) -> str:
    parts = []
    for kind, processes in _kinds(result).items():
        if kind.startswith("postgres"):
            continue
        rss = statistics.fmean(float(p["rss_mib"]) for p in processes)
        pss = statistics.fmean(float(p["pss_mib"]) for p in processes)
        parts.append(f"{kind} {rss:.0f} / {pss:.0f} MiB")
    return " + ".join(parts) or "-"


def _cpu(result: Mapping[str, Any]) -> str:
    parts = []
    for kind, processes in _kinds(result).items():
        if kind.startswith("postgres"):
            continue
        values = [float(p["cpu_pct_of_one_core"]) for p in processes]
        low, high = f"{min(values):.1f}", f"{max(values):.1f}"
        spread = low if low == high else f"{low}-{high}"
        parts.append(f"{kind} {spread} %")
    return " + ".join(parts) or "-"


def _rest(result: Mapping[str, Any]) -> str:
    wrk = (result.get("rest") or {}).get("wrk") or {}
    if not wrk.get("rps"):
        return "-"
    return f"{float(wrk['rps']):,.0f} req/s, p99 {wrk.get('lat_p99_ms')} ms"


def _bootstrap(result: Mapping[str, Any]) -> str:
    boot = result.get("bootstrap") or {}
    streaming, ready = boot.get("pg_all_streaming_s"), boot.get("all_members_ready_s")
    if streaming is None or ready is None:
        return "-"
    return f"{float(streaming):.1f} s / {float(ready):.1f} s"


def _lost(result: Mapping[str, Any]) -> str:
    check = result.get("final_data_check") or {}
    if "missing_total" not in check:
        return "-"
    return f"{check['missing_total']} of {int(check['acked_total']):,}"


def table(results: Sequence[tuple[Scenario, Mapping[str, Any]]]) -> str:
    """README-style Markdown: one column per scenario."""
    rows: list[tuple[str, Callable[[Mapping[str, Any]], str]]] = [
        (f"crash failover, writes unavailable, min / median / max ({_rounds(results, 'failovers')})",
         lambda r: _spread(_ok_windows(r, "failovers"))),
        (f"planned switchover, writes unavailable, min / median / max ({_rounds(results, 'switchovers')})",
         lambda r: _spread(_ok_windows(r, "switchovers"))),
        ("bootstrap: 2 replicas streaming / manager ready", _bootstrap),
        ("GET /primary, wrk -t2 -c8", _rest),
        ("idle memory per node (RSS / PSS, mean)", _memory),
        ("idle CPU per node, % of a core (min-max)", _cpu),
        ("acknowledged writes lost", _lost),
        ("errors", lambda r: "; ".join(r.get("errors") or []) or "none"),
    ]
    lines = ["| | " + " | ".join(s.title for s, _ in results) + " |",
             "|---|" + "---|" * len(results)]
    for heading, cell in rows:
        lines.append(f"| {heading} | " + " | ".join(cell(r) for _, r in results) + " |")
    return "\n".join(lines)


def _rounds(results: Sequence[tuple[Scenario, Mapping[str, Any]]], kind: str) -> str:
    counts = sorted({len(r.get(kind) or []) for _, r in results})
    return "/".join(str(c) for c in counts) + " rounds"


def _git_head() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO,
                          check=False, timeout=10)
    return done.stdout.strip()


def write_report(results: Sequence[tuple[Scenario, Mapping[str, Any]]], failed: Sequence[str], out: Path,
                 commit: str) -> None:
    date = min((str(r.get("started_at", "")) for _, r in results), default="")[:10] or \
        datetime.now(UTC).strftime("%Y-%m-%d")
    text = [f"# raftpg and Patroni + etcd side by side ({date}, main at {commit})", "",
            "`python3 -m benchmarks.side_by_side`: /work/shared/bench/failover_bench.py through each side's "
            "adapter, one after the other on the same machine (PostgreSQL 15, a writer doing ~100 INSERT/s "
            "through a multi-host `target_session_attrs=read-write` conninfo). Raw results: "
            + ", ".join(f"`{result_path(s).name}`" for s, _ in results) + ".", "", table(results), "",
            "Memory and CPU count the manager processes each adapter lists (`pids`), PostgreSQL left out; "
            "the adapter decides whether raftpg's fence is among them.", ""]
    if failed:
        text += [f"Did not complete: {', '.join(failed)}.", ""]
    out.write_text("\n".join(text))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switchovers", type=int, default=5)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--rest-seconds", type=int, default=10)
    parser.add_argument("--only", nargs="+", choices=[s.label for s in SCENARIOS], default=None)
    parser.add_argument("--bench", type=Path, default=SHARED_BENCH / "failover_bench.py")
    parser.add_argument("--out", type=Path, default=RESULTS / "side-by-side.md")
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from existing JSONs")
    parser.add_argument("--commit", default=None, help="with --table-only: the commit the runs measured")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    rounds = Rounds(args.switchovers, args.failovers, args.idle_seconds, args.rest_seconds)
    scenarios = [s for s in SCENARIOS if args.only is None or s.label in args.only]
    if args.dry_run:
        for scenario in scenarios:
            if scenario.setup:
                print(shlex.join(scenario.setup))
            print(shlex.join(bench_command(scenario, rounds, args.bench)))
            print(shlex.join(stop_command(scenario)))
        return 0
    commit = _git_head()
    failed = [] if args.table_only else [s.label for s in scenarios if not run_scenario(s, rounds, args.bench)]
    results = [(s, json.loads(result_path(s).read_text())) for s in scenarios if result_path(s).exists()]
    write_report(results, failed, args.out, args.commit or commit)
    print(args.out.read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
