"""Smoke test of the benchmark (bench/README.md): bench/run with 2 calls for a
5 s window must exit 0 (no failed call) and write results.json with both calls
up, none failed, and latency samples both ways. Counts only: the figures
themselves depend on the machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CALLS = 2


def main() -> int:
    source = Path(os.environ["VOICEBRIDGE_SOURCE_ROOT"])
    build = Path(os.environ["VOICEBRIDGE_BUILD_ROOT"])
    out = build / "meson-logs" / "bench-smoke"
    command = [str(source / "bench" / "run"), "--calls", str(CALLS), "--seconds", "5", "--no-floors",
               "--build", str(build), "--out", str(out)]
    (out / "results.json").unlink(missing_ok=True)       # never judge an earlier run
    print("running:", " ".join(command), flush=True)
    status = subprocess.run(command).returncode
    problems = [] if status == 0 else [f"bench/run exited with {status}"]
    try:
        [result] = json.loads((out / "results.json").read_text())
    except (OSError, ValueError) as error:
        problems.append(f"no single result in {out}/results.json: {error!r}")
        result = {}
    expected = {"n": CALLS, "calls_up": CALLS, "calls_failed": 0, "calls_up_at_end": CALLS}
    for key, value in expected.items():
        if result.get(key) != value:
            problems.append(f"{key} is {result.get(key)!r}, expected {value}")
    for key in ("inbound_samples", "outbound_samples"):
        if not result.get(key):
            problems.append(f"{key} is {result.get(key)!r}: no latency measured")
    for key in ("inbound_ms_p50", "outbound_ms_p50", "server_cpu_pct", "loadgen_cpu_pct", "max_outbound_gap_ms"):
        if result.get(key) is None:
            problems.append(f"{key} is missing")
    for problem in problems:
        print("bench-smoke:", problem, file=sys.stderr)
    if problems:
        print(f"logs of the run: {out}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
