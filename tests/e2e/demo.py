"""One complete WhatsApp call through the real voicebridge, narrated.

  tests/netns-run python3 tests/e2e/demo.py --build <builddir> --out <dir>

Starts fake-realtime, the fake Graph API and voicebridge, then a WhatsApp
caller (aiortc) speaks a short voice-like signal. Prints the conversation as it
happens and saves what the caller heard to <dir>/caller-heard.wav (logs too).
"""
import argparse
import asyncio
import importlib.util
import os
import re
import sys
import time
from pathlib import Path

if importlib.util.find_spec("aiortc") is None and sys.executable != "/usr/bin/python3" \
        and os.path.exists("/usr/bin/python3"):
    # The python3 on PATH may lack Debian's python3-aiortc; use the system one.
    os.execv("/usr/bin/python3", ["/usr/bin/python3", *sys.argv])

TALK_SECONDS = 9
START = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - START:6.2f}s] {text}", flush=True)


async def follow_server_log(path: Path, call_id: str) -> None:
    """Echoes the server's log lines about the call (state changes, transcripts)."""
    position = 0
    while True:
        try:
            with open(path, errors="replace") as log:
                log.seek(position)
                for line in log.readlines():
                    if call_id in line:
                        say("server  | " + re.sub(r"^.*?(call )", r"\1", line.rstrip()))
                position = log.tell()
        except FileNotFoundError:
            pass
        await asyncio.sleep(0.2)


async def run(out: Path) -> int:
    import harness
    from fake_meta.caller import BurstSignal

    h = harness.Harness("demo", realtime_args=("--reply-ms", "1500", "--tone-hz", "660"),
                        log_dir=out)
    follower = None
    try:
        await h.start()
        say(f"voicebridge up on {h.base_url}, fake Graph API on {h.graph.base_url()}, "
            f"fake Realtime at {h.realtime_url}")
        caller = h.new_caller("Demo Caller", "15551234567",
                              signal=BurstSignal(170, kind="speech", on_s=1.5, off_s=1.5, bursts=2))
        call_id = await h.prepare_call(caller)
        follower = asyncio.ensure_future(follow_server_log(h.server.log_path, call_id))
        status = await h.webhook.post(h.connect_payload(caller, call_id))
        say(f"Meta -> voicebridge: connect webhook for {call_id} (HTTP {status})")

        pre_accept = await h.graph.wait_for_action(call_id, "pre_accept", 20)
        if not pre_accept:
            say("no pre_accept arrived")
            return 1
        say(f"voicebridge -> Graph: pre_accept with a {len(pre_accept.sdp)}-byte SDP answer")
        if await caller.wait_connected(20):
            say(f"caller: ICE + DTLS connected ({caller.ice_connection_state})")
        accept = await h.graph.wait_for_action(call_id, "accept", 20)
        if not accept:
            say("no accept arrived")
            return 1
        say("voicebridge -> Graph: accept (same SDP: %s)" % (accept.sdp == pre_accept.sdp))
        say(f"caller speaks: two {caller.signal.on_samples / 48000:.1f} s voice-like bursts")

        reported = set()
        deadline = time.monotonic() + TALK_SECONDS
        while time.monotonic() < deadline:
            session = await h.session_for(caller)
            if session:
                for key, text in (("speech_started", "fake AI hears the caller start speaking"),
                                  ("speech_stopped", "fake AI hears the caller stop; it replies"),
                                  ("responses_started", "fake AI response started")):
                    for n in range(1, session[key] + 1):
                        if (key, n) not in reported:
                            reported.add((key, n))
                            say(f"fake AI | {text} (#{n})")
            await asyncio.sleep(0.25)

        session = await h.session_for(caller) or {}
        say(f"fake AI | heard {session.get('input_ms', 0) / 1000:.1f} s of caller audio, "
            f"dominant {session.get('input_dominant_hz', 0):.0f} Hz")
        say(f"caller heard {caller.received.seconds:.1f} s of audio "
            f"({caller.received.voiced_seconds():.1f} s voiced, dominant "
            f"{caller.received.dominant_hz():.0f} Hz)")
        wav = out / "caller-heard.wav"
        caller.received.save_wav(str(wav))
        say(f"saved what the caller heard to {wav}")

        status = await h.caller_hangs_up(caller, call_id, duration=TALK_SECONDS)
        say(f"caller hangs up: terminate webhook (HTTP {status})")
        async def ended() -> bool:
            return await h.active_calls() == 0
        await h.wait_until(ended, 15, "the call to end")
        say(f"call ended; /health active_calls = {await h.active_calls()}; "
            f"Graph actions: {', '.join(h.graph.actions(call_id))}")
        return 0 if caller.received.voiced_seconds() > 0 and session.get("speech_started") else 1
    finally:
        if follower:
            follower.cancel()
        await h.stop()
        say(f"logs in {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", required=True, help="meson build directory")
    parser.add_argument("--out", required=True, help="directory for the WAV file and logs")
    args = parser.parse_args()
    os.environ["VOICEBRIDGE_BUILD_ROOT"] = str(Path(args.build).resolve())
    os.environ.setdefault("GST_PLUGIN_PATH", str(Path(args.build).resolve() / "plugins"))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    return asyncio.run(run(out))


if __name__ == "__main__":
    sys.exit(main())
