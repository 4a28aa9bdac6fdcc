"""The floors printed beside the server's figures: what the media work of one
call costs with nothing of ours around it, in % of one core per stream.

- codec: K live streams in one gst-launch-1.0 process, per stream
  "encode": 24 kHz PCM -> audioresample -> opusenc (the server's settings) -> rtpopuspay
  "encode+decode": 48 kHz PCM -> opusenc -> rtpopuspay -> rtpopusdepay -> opusdec -> 24 kHz
  each with digital silence (what the AI sends most of a call) and with a tone;
  "voice encode" / "voice encode+decode": the same with the server's own
  voiceopusenc (complexity 2, silence skipped) and voiceopusdec, all at 24 kHz.
- webrtcbin: K pairs of webrtcbin in one process (bench/webrtcbin_floor.py), each
  endpoint sending Opus-encoded silence and counting what it receives; per endpoint.
CPU is utime+stime of that process over a steady window (after a warm-up).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
OPUSENC = "opusenc bitrate=20000 bandwidth=wideband frame-size=20 audio-type=voice dtx=false"
VOICEOPUSENC = "voiceopusenc bitrate=20000 max-bandwidth=wideband complexity=2"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def branch(kind: str, wave: str) -> str:
    source = f"audiotestsrc is-live=true wave={wave} volume=0.3 samplesperbuffer=480"
    if kind == "encode":
        return (f"{source} ! audio/x-raw,rate=24000,channels=1 ! audioresample ! "
                f"audio/x-raw,rate=48000 ! {OPUSENC} ! rtpopuspay ! fakesink sync=false")
    if kind == "voice encode":
        return f"{source} ! audio/x-raw,rate=24000,channels=1 ! {VOICEOPUSENC} ! rtpopuspay ! fakesink sync=false"
    if kind == "voice encode+decode":
        return (f"{source} ! audio/x-raw,rate=24000,channels=1 ! {VOICEOPUSENC} ! rtpopuspay ! rtpopusdepay ! "
                "voiceopusdec ! audio/x-raw,rate=24000 ! fakesink sync=false")
    return (f"{source} ! audio/x-raw,rate=48000,channels=1 ! {OPUSENC} ! rtpopuspay ! "
            "rtpopusdepay ! opusdec ! audioresample ! audio/x-raw,rate=24000 ! fakesink sync=false")


def measure(argv: list[str], streams: int, warmup: float, seconds: float, *,
            must_exit_cleanly: bool = False) -> float:
    """% of one core per stream of the process started with argv."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(warmup)
        if process.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited: {process.stderr.read().decode()[-500:]}")
        start, cpu0 = time.monotonic(), cpu_seconds(process.pid)
        time.sleep(seconds)
        cpu1, window = cpu_seconds(process.pid), time.monotonic() - start
    finally:
        process.terminate()
        process.wait(10)
    if must_exit_cleanly and process.returncode != 0:
        raise RuntimeError(f"{argv[-3]}: {process.stderr.read().decode()[-500:]}")
    return (cpu1 - cpu0) / window * 100 / streams


def main() -> int:
    parser = argparse.ArgumentParser(description="codec and webrtcbin floors")
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    floors = {}
    for kind in ("encode", "encode+decode", "voice encode", "voice encode+decode"):
        for wave in ("silence", "sine"):
            pipeline = " ".join(branch(kind, wave) for _ in range(args.streams))
            floors[f"{kind} ({wave})"] = measure(["gst-launch-1.0", "-q", *pipeline.split()],
                                                 args.streams, args.warmup, args.seconds)
    floors["webrtcbin endpoint, encode of silence included"] = measure(
        [sys.executable, str(HERE / "webrtcbin_floor.py"), "--pairs", str(args.streams)],
        2 * args.streams, args.warmup + 3, args.seconds, must_exit_cleanly=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "floors.json").write_text(json.dumps(floors, indent=2))
    print(f"Floors ({args.streams} streams per process, % of one core per stream):")
    for name, value in floors.items():
        print(f"  {name:50s} {value:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
