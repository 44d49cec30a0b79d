"""REST API under attack: GET /primary latency and event-loop lag, without and with hostile clients.

Three processes: the API server (the real start_api with its default limits, over TLS, in front
of a fake backend answering like a primary: this measures the HTTP layer), an attacker (idle
TLS connections, slowloris clients, TCP connections that never finish the TLS handshake, all
reopened whenever the server cuts them; niced, as it stands in for machines elsewhere), and
this one, which sends GET /primary one after the other, over one keep-alive connection and
over a new connection each time (as load balancers' health checks do).

Usage: python3 benchmarks/api_load.py [--quick] [--output benchmarks/results/api-load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from raftpg.api.server import fd_capacity
from raftpg.cli.certs import write_ca, write_node_cert

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "api-load.json"
REQUEST_TIMEOUT = 5.0
READY_TIMEOUT = 180.0
SETTLE = 1.0
"""Seconds of attack before measuring, so the first connection round is not what is measured."""


@dataclass(frozen=True)
class Load:
    requests: int
    idle: int
    slowloris: int
    stalled_tls: int
    trickle_interval: float

    @property
    def attackers(self) -> int:
        return self.idle + self.slowloris + self.stalled_tls


FULL = Load(requests=2000, idle=1000, slowloris=200, stalled_tls=50, trickle_interval=0.2)
QUICK = Load(requests=200, idle=100, slowloris=20, stalled_tls=5, trickle_interval=0.2)


def summary(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50/p99/max in milliseconds."""
    if not seconds:
        return {"count": 0}
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"count": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 2)}


class Child:
    """A benchmark process driven by lines on its stdin and answering with lines on its stdout."""

    def __init__(self, args: Sequence[str], nice: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.api_attack", *args], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=(lambda: os.nice(nice)) if nice else None)

    async def line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        text = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout)
        if not text:
            raise RuntimeError(f"benchmark process {self.process.args!r} exited ({self.process.poll()})")
        return text.strip()

    async def ask(self, command: str, timeout: float = 30.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return dict(json.loads(await self.line(timeout)))

    async def finish(self, timeout: float = 30.0) -> str:
        """Close stdin (the child's signal to stop) and return its last line."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            return await self.line(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def measure(url: str, context: ssl.SSLContext, requests: int, *, fresh: bool) -> dict[str, Any]:
    """Sequential GETs; each latency is from sending to the whole answer read."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(ssl=context, force_close=fresh, limit=1)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for _ in range(requests):
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    outcome = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            latencies.append(time.perf_counter() - started)
            if outcome != "200":
                errors[outcome] = errors.get(outcome, 0) + 1
    return {**summary(latencies), "errors": errors}


async def phase(server: Child, url: str, context: ssl.SSLContext, load: Load) -> dict[str, Any]:
    before = await server.ask("stats")  # also starts the loop-lag window
    keepalive = await measure(url, context, load.requests, fresh=False)
    fresh = await measure(url, context, load.requests, fresh=True)
    after = await server.ask("stats")
    return {
        "keepalive": keepalive,
        "new_connection_each": fresh,
        "loop_lag": summary(after["lag"]),
        "server_open_connections": {"before": before["open_connections"], "after": after["open_connections"]},
        "server_cut": {key: after[key] - before[key] for key in ("cut_slow", "cut_idle", "refused")},
    }


def make_certs(directory: Path) -> Path:
    write_ca(directory / "ca")
    write_node_cert(directory / "ca", directory / "node1", "node1", ["127.0.0.1"])
    return directory / "node1"


async def run(load: Load) -> dict[str, Any]:
    fd_capacity(load.attackers)
    with tempfile.TemporaryDirectory(prefix="raftpg-api-load-") as tmp:
        certs = make_certs(Path(tmp))
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        server = Child(["serve", str(certs)])
        attacker: Child | None = None
        try:
            started = json.loads(await server.line(30))
            port = started["port"]
            url = f"https://127.0.0.1:{port}/primary"
            baseline = await phase(server, url, context, load)
            print(f"baseline: {brief(baseline)}", flush=True)
            attacker = Child(["attack", str(port), str(certs / "ca.crt"), str(load.idle), str(load.slowloris),
                              str(load.stalled_tls), str(load.trickle_interval)], nice=10)
            opening = time.monotonic()
            if await attacker.line(READY_TIMEOUT) != "ready":
                raise RuntimeError("the attacker did not get ready")
            opened_in = time.monotonic() - opening
            await asyncio.sleep(SETTLE)
            attacked = await phase(server, url, context, load)
            print(f"under attack: {brief(attacked)}", flush=True)
            attack_counters = json.loads(await attacker.finish())
            attacker = None
        finally:
            if attacker is not None:
                attacker.stop()
            server.stop()
    return {
        "benchmark": "api_load",
        "load": {"requests_per_mode": load.requests, "idle_tls_connections": load.idle,
                 "slowloris_clients": load.slowloris, "stalled_tls_handshakes": load.stalled_tls,
                 "slowloris_byte_interval_s": load.trickle_interval},
        "server_limits": started["limits"],
        "baseline": baseline,
        "under_attack": attacked,
        "attack": {**attack_counters, "first_round_opened_in_s": round(opened_in, 2)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "aiohttp": aiohttp.__version__,
                    "platform": platform.platform()},
    }


def brief(result: dict[str, Any]) -> str:
    keep, fresh, lag = result["keepalive"], result["new_connection_each"], result["loop_lag"]
    return (f"/primary keep-alive p50 {keep['p50_ms']} p99 {keep['p99_ms']} max {keep['max_ms']} ms, "
            f"new connection p50 {fresh['p50_ms']} p99 {fresh['p99_ms']} max {fresh['max_ms']} ms, "
            f"errors {keep['errors'] or 0}/{fresh['errors'] or 0}; loop lag p50 {lag['p50_ms']} "
            f"p99 {lag['p99_ms']} max {lag['max_ms']} ms; server connections {result['server_open_connections']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a small load for a CI smoke run")
    parser.add_argument("--output", type=Path, help=f"results JSON (default without --quick: {DEFAULT_OUTPUT})")
    args = parser.parse_args()
    load = QUICK if args.quick else FULL
    result = asyncio.run(run(load))
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {output}")


if __name__ == "__main__":
    main()
