"""Run a benchmark's command line from a test, bounded: on timeout it gets SIGTERM, which the
benchmarks turn into their normal shutdown (every process they started stopped by PID), and only
then SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
STOP_GRACE = 60.0


def run_benchmark(module: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`python3 -m <module> <args>` from the repository root; the output is kept for the assertion
    message. Raises TimeoutError after stopping it when it overran."""
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPOSITORY, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        raise TimeoutError(f"{module} overran {timeout:g} s:\n{out[-3000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, "")
