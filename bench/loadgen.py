"""Load generator for bench/run: N concurrent simulated WhatsApp calls against
the real voicebridge server, with the fake Graph API and fake-realtime of the
end-to-end tests, measured from outside the server (see bench/README.md).

Run inside a private network namespace (bench/run does that). One run per N:
fresh processes, calls placed with a small ramp, a warm-up, then a steady
window over which CPU, gaps and latencies are measured. Prints one table row
per N and writes everything to <out>/results.json.

Cheap callers: aiortc does ICE/DTLS/SRTP, but audio is pre-encoded Opus
(encoded once per process, replayed as packets: no encoder per call) and what
comes back is counted per RTP packet, never decoded.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import fractions
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import RTCSessionDescription  # noqa: E402
from aiortc.codecs.opus import OpusEncoder  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

import harness  # noqa: E402
from fake_meta.caller import (FRAME_SAMPLES, SAMPLE_RATE, BurstSignal, Caller,  # noqa: E402
                              rename_mid, whatsapp_offer)

TONE_ON_S, TONE_OFF_S = 1.0, 3.0           # one caller turn every 4 s
LOUD_PAYLOAD_BYTES = 20                    # Opus of digital silence is ~8 bytes, of a tone 50+
ONSET_QUIET_PACKETS = 5                    # a loud packet after this many quiet ones is an onset
PCM_ONSET_LEVEL = int(0.05 * 32767)        # |sample| above this in a WebSocket append/delta is sound
MIN_RTP_RATE = 45                          # packets/s a healthy call receives (50 sent)
MATCH_WINDOW_S = 1.0                       # latencies above this are unmatched, not latencies
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# ---- /proc ----------------------------------------------------------------------------
def cpu_seconds(pid: int | str) -> float:
    """utime + stime of a whole process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KB


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def thread_names(pid: int) -> dict[str, int]:
    """How many threads of the process carry each name (GStreamer names them after pads)."""
    names: dict[str, int] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = re.sub(r"\d+", "N", f.read().strip())
        except OSError:
            continue
        names[name] = names.get(name, 0) + 1
    return dict(sorted(names.items(), key=lambda item: -item[1]))


def percentile(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]        # nearest rank


# ---- pre-encoded caller audio ------------------------------------------------------------
def encode_turns(frequency_hz: float) -> list[bytes]:
    """One period (tone then silence) as 20 ms Opus payloads, encoded once."""
    signal = BurstSignal(frequency_hz, on_s=TONE_ON_S, off_s=TONE_OFF_S)
    encoder = OpusEncoder()
    frames = int((TONE_ON_S + TONE_OFF_S) * SAMPLE_RATE) // FRAME_SAMPLES
    payloads = []
    for i in range(frames):
        pcm = signal.samples(i * FRAME_SAMPLES, FRAME_SAMPLES)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = i * FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        encoded, _ = encoder.encode(frame)
        payloads.extend(encoded)
    return payloads


class PreEncodedTrack(MediaStreamTrack):
    """Replays the pre-encoded payloads in real time; notes when each tone starts."""

    kind = "audio"

    def __init__(self, payloads: list[bytes], on_tone_start):
        super().__init__()
        self.payloads = payloads
        self.on_tone_start = on_tone_start
        self._index = 0
        self._start: Optional[float] = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._index * 0.020 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        position = self._index % len(self.payloads)
        if position == 0:
            self.on_tone_start(time.monotonic())
        packet = av.Packet(self.payloads[position])
        packet.pts = self._index * FRAME_SAMPLES
        packet.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._index += 1
        return packet


@dataclass
class CallStats:
    """What one call's caller and its WebSocket saw; times are time.monotonic()."""
    measuring: bool = False
    rtp_packets: int = 0
    last_rtp_at: Optional[float] = None
    max_gap_s: float = 0.0
    quiet_run: int = ONSET_QUIET_PACKETS
    tone_sent_at: list[float] = field(default_factory=list)      # caller's tone onsets
    rtp_onset_at: list[float] = field(default_factory=list)      # AI audio onsets heard
    append_onset_at: list[float] = field(default_factory=list)   # caller audio onsets on the WebSocket
    delta_onset_at: list[float] = field(default_factory=list)    # AI audio onsets on the WebSocket


class BenchCaller(Caller):
    """A Meta-shaped aiortc caller that sends pre-encoded Opus and counts RTP."""

    def __init__(self, name: str, wa_id: str, payloads: list[bytes]):
        super().__init__(name, wa_id)
        self.stats = CallStats()
        self.payloads = payloads

    async def make_offer(self) -> str:
        track = PreEncodedTrack(self.payloads, self._tone_started)
        transceiver = self.pc.addTransceiver(track, direction="sendrecv")
        transceiver.receiver._handle_rtp_packet = self._count_rtp
        offer = await self.pc.createOffer()
        offer_mid = re.search(r"^a=mid:(\S+)", offer.sdp, re.M).group(1)
        await self.pc.setLocalDescription(
            RTCSessionDescription(rename_mid(offer.sdp, offer_mid, "audio"), "offer"))
        ice = transceiver.sender.transport.transport          # behave like Meta's lite agent
        ice._connection.ice_controlling = False
        ice._role_set = True
        self.offer_sdp = whatsapp_offer(self.pc.localDescription.sdp, ice_lite=True)
        return self.offer_sdp

    def _on_track(self, track: MediaStreamTrack) -> None:
        pass                                                   # nothing is decoded

    def _tone_started(self, at: float) -> None:
        if self.stats.measuring:
            self.stats.tone_sent_at.append(at)

    async def _count_rtp(self, packet, arrival_time_ms: int) -> None:
        now, s = time.monotonic(), self.stats
        if s.measuring:
            s.rtp_packets += 1
            if s.last_rtp_at is not None:
                s.max_gap_s = max(s.max_gap_s, now - s.last_rtp_at)
            s.last_rtp_at = now
        if len(packet.payload) >= LOUD_PAYLOAD_BYTES:
            if s.quiet_run >= ONSET_QUIET_PACKETS and s.measuring:
                s.rtp_onset_at.append(now)
            s.quiet_run = 0
        else:
            s.quiet_run += 1


# ---- a WebSocket-watching TCP proxy between voicebridge and fake-realtime -------------------
class WebSocketTap:
    """Forwards bytes unchanged; parses the WebSocket frames of each direction to
    time-stamp the onsets of sound in input_audio_buffer.append (server to AI)
    and response.output_audio.delta (AI to server). Connections are matched to
    calls by the caller's name in the session instructions."""

    def __init__(self, callers_by_name: dict[str, BenchCaller]):
        self.callers_by_name = callers_by_name
        self.upstream: tuple[str, int] = ("127.0.0.1", 0)
        self.port = 0
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server:
            self._server.close()

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        state = {"caller": None}
        await asyncio.gather(self._pump(client_r, up_w, state, to_ai=True),
                             self._pump(up_r, client_w, state, to_ai=False),
                             return_exceptions=True)

    async def _pump(self, reader, writer, state: dict, *, to_ai: bool) -> None:
        parser = FrameParser()
        quiet = {"value": True}
        try:
            while data := await reader.read(65536):
                now = time.monotonic()
                writer.write(data)
                for text in parser.feed(data):
                    self._inspect(text, now, state, quiet, to_ai)
                await writer.drain()
        finally:
            writer.close()

    def _inspect(self, text: str, now: float, state: dict, quiet: dict, to_ai: bool) -> None:
        if state["caller"] is None:
            for name, caller in self.callers_by_name.items():
                if name in text:
                    state["caller"] = caller
                    break
            return
        if not to_ai and ('"response.created"' in text or '"response.done"' in text):
            quiet["value"] = True                # a new reply starts with its first sound
            return
        kind = "input_audio_buffer.append" if to_ai else "response.output_audio.delta"
        if f'"{kind}"' not in text:
            return
        try:
            audio = json.loads(text)["audio" if to_ai else "delta"]
            pcm = np.frombuffer(base64.b64decode(audio), dtype="<i2")
        except (ValueError, KeyError, TypeError):
            return
        loud = pcm.size > 0 and int(np.abs(pcm.astype(np.int32)).max()) > PCM_ONSET_LEVEL
        stats = state["caller"].stats
        if loud and quiet["value"] and stats.measuring:
            (stats.append_onset_at if to_ai else stats.delta_onset_at).append(now)
        quiet["value"] = not loud


class FrameParser:
    """Reassembles WebSocket text messages from a byte stream (after the HTTP upgrade)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.in_http = True
        self.fragments = b""

    def feed(self, data: bytes) -> list[str]:
        self.buffer += data
        if self.in_http:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return []
            self.buffer, self.in_http = self.buffer[end + 4:], False
        messages = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return messages
            fin, opcode, payload = frame
            if opcode in (0x1, 0x0):
                self.fragments += payload
                if fin:
                    messages.append(self.fragments.decode("utf-8", "replace"))
                    self.fragments = b""

    def _next_frame(self) -> Optional[tuple[bool, int, bytes]]:
        b = self.buffer
        if len(b) < 2:
            return None
        fin, opcode, masked, length = b[0] & 0x80, b[0] & 0x0F, b[1] & 0x80, b[1] & 0x7F
        offset = 2
        if length == 126:
            if len(b) < 4:
                return None
            length, offset = int.from_bytes(b[2:4], "big"), 4
        elif length == 127:
            if len(b) < 10:
                return None
            length, offset = int.from_bytes(b[2:10], "big"), 10
        key = b""
        if masked:
            key, offset = b[offset:offset + 4], offset + 4
        if len(b) < offset + length:
            return None
        payload = b[offset:offset + length]
        if masked:
            mask = np.frombuffer((key * (length // 4 + 1))[:length], dtype=np.uint8)
            payload = (np.frombuffer(payload, dtype=np.uint8) ^ mask).tobytes()
        self.buffer = b[offset + length:]
        return bool(fin), opcode, payload


# ---- one run at N calls -------------------------------------------------------------------
def match_latencies(starts: list[float], ends: list[float]) -> list[float]:
    """For each start, the first end after it (within MATCH_WINDOW_S), in ms."""
    out = []
    for start in starts:
        later = [e for e in ends if start <= e <= start + MATCH_WINDOW_S]
        if later:
            out.append((later[0] - start) * 1000)
    return out


def setup_histogram_quantiles(metrics: str) -> dict:
    """p50/p99 upper bounds from the voicebridge_call_setup_seconds histogram."""
    buckets = []
    for m in re.finditer(r'^voicebridge_call_setup_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\}\s+(\S+)', metrics, re.M):
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return {}
    total = buckets[-1][1]
    return {f"p{q}": next(le for le, count in buckets if count >= q / 100 * total) * 1000 for q in (50, 99)}


async def run_once(n: int, args, payloads: list[bytes], out_dir: Path) -> dict:
    callers = [BenchCaller(f"Bench Caller {i:03d}", f"1555{i:07d}", payloads) for i in range(n)]
    tap = WebSocketTap({c.name: c for c in callers})
    await tap.start()

    class TappedHarness(harness.Harness):
        def server_env(self) -> dict[str, str]:
            env = super().server_env()
            tap.upstream = ("127.0.0.1", int(re.search(r":(\d+)/", self.realtime_url).group(1)))
            env["OPENAI_REALTIME_URL"] = self.realtime_url.replace(f":{tap.upstream[1]}/", f":{tap.port}/")
            return env

    h = TappedHarness(f"bench-n{n}", log_dir=out_dir / f"n{n}",
                      realtime_args=("--tone-hz", "1200", "--reply-ms", str(args.reply_ms)),
                      env={"MAX_CONCURRENT_CALLS": str(max(n, 1)), "G_MESSAGES_DEBUG": None,
                           "CALL_SETUP_TIMEOUT_S": "20"})
    result: dict = {"n": n}
    try:
        await h.start()
        pid = h.server.pid
        await asyncio.sleep(1)
        result.update(idle_rss_kb=rss_kb(pid), idle_threads=thread_count(pid))

        webhook_sent: dict[str, float] = {}

        async def place(i: int, caller: BenchCaller) -> Optional[str]:
            await asyncio.sleep(i * args.ramp_ms / 1000)
            call_id = await h.prepare_call(caller)
            webhook_sent[call_id] = time.monotonic()
            status = await h.webhook.post(h.connect_payload(caller, call_id))
            return call_id if status == 200 else None
        call_ids = await asyncio.gather(*(place(i, c) for i, c in enumerate(callers)))
        connected = await asyncio.gather(*(c.wait_connected(args.setup_timeout) for c in callers))
        setup_ms, pre_accept_ms = [], []
        for call_id in filter(None, call_ids):
            pre_accept = await h.graph.wait_for_action(call_id, "pre_accept", 1)
            accept = await h.graph.wait_for_action(call_id, "accept", 1)
            if pre_accept:
                pre_accept_ms.append((pre_accept.received_at - webhook_sent[call_id]) * 1000)
            if accept:
                setup_ms.append((accept.received_at - webhook_sent[call_id]) * 1000)
        up = [c for c, ok in zip(callers, connected) if ok]
        result.update(calls_up=len(up), calls_failed=n - len(up),
                      setup_ms_p50=percentile(setup_ms, 50), setup_ms_p99=percentile(setup_ms, 99),
                      pre_accept_ms_p50=percentile(pre_accept_ms, 50),
                      pre_accept_ms_p99=percentile(pre_accept_ms, 99))

        await asyncio.sleep(args.warmup)
        for c in up:
            c.stats.measuring = True
        realtime_pid, me = h.realtime.pid, os.getpid()
        t0 = time.monotonic()
        cpu0 = {p: cpu_seconds(p) for p in (pid, realtime_pid, me)}
        profiler = await start_profiler(pid, args, out_dir / f"n{n}") if args.perf else None
        await asyncio.sleep(args.seconds)
        if profiler:
            await profiler.wait()
        cpu1 = {p: cpu_seconds(p) for p in (pid, realtime_pid, me)}
        window = time.monotonic() - t0
        for c in up:
            c.stats.measuring = False
        per_call = max(len(up), 1)
        server_cpu = (cpu1[pid] - cpu0[pid]) / window * 100
        async with h.http.get(f"{h.base_url}/metrics") as response:
            metrics = await response.text()
        inbound = [ms for c in up for ms in match_latencies(c.stats.tone_sent_at, c.stats.append_onset_at)]
        outbound = [ms for c in up for ms in match_latencies(c.stats.delta_onset_at, c.stats.rtp_onset_at)]
        still_up = await h.active_calls()
        silent = [c for c in up if c.stats.rtp_packets < MIN_RTP_RATE * window]
        result.update(
            window_s=window, calls_up_at_end=still_up, calls_without_media=len(silent),
            calls_failed=n - len(up) + len(silent) + max(0, len(up) - still_up),
            server_cpu_pct=server_cpu, server_cpu_pct_per_call=server_cpu / per_call,
            rss_kb=rss_kb(pid), threads=thread_count(pid), thread_names=thread_names(pid),
            rss_kb_per_call=(rss_kb(pid) - result["idle_rss_kb"]) / per_call,
            threads_per_call=(thread_count(pid) - result["idle_threads"]) / per_call,
            loadgen_cpu_pct=(cpu1[me] - cpu0[me]) / window * 100,
            fake_realtime_cpu_pct=(cpu1[realtime_pid] - cpu0[realtime_pid]) / window * 100,
            rtp_packets_per_call_s=sum(c.stats.rtp_packets for c in up) / per_call / window,
            max_outbound_gap_ms=max((c.stats.max_gap_s * 1000 for c in up), default=None),
            inbound_ms_p50=percentile(inbound, 50), inbound_ms_p99=percentile(inbound, 99),
            inbound_samples=len(inbound), tones_sent=sum(len(c.stats.tone_sent_at) for c in up),
            outbound_ms_p50=percentile(outbound, 50), outbound_ms_p99=percentile(outbound, 99),
            outbound_samples=len(outbound), replies_seen=sum(len(c.stats.delta_onset_at) for c in up),
            metrics_setup_ms=setup_histogram_quantiles(metrics))
        for c, call_id in zip(callers, call_ids):
            if call_id:
                await h.caller_hangs_up(c, call_id)
    finally:
        codes = await h.stop()
        await tap.stop()
        result["server_exit"] = codes.get("voicebridge")
    return result


async def start_profiler(pid: int, args, log_dir: Path) -> asyncio.subprocess.Process:
    """perf record of the server over the window (call graphs, 499 Hz)."""
    return await asyncio.create_subprocess_exec(
        "perf", "record", "-q", "-F", "499", "-g", "-p", str(pid), "-o", str(log_dir / "perf.data"),
        "--", "sleep", str(args.seconds), stdout=asyncio.subprocess.DEVNULL,
        stderr=open(log_dir / "perf.log", "wb"))


# ---- the table ------------------------------------------------------------------------------
COLUMNS = [("N", "n", "{:d}"), ("up", "calls_up", "{:d}"), ("failed", "calls_failed", "{:d}"),
           ("cpu%/call", "server_cpu_pct_per_call", "{:.2f}"), ("RSS MB", "rss_kb", "{:.1f}"),
           ("dRSS/call MB", "rss_kb_per_call", "{:.2f}"),
           ("thr/call", "threads_per_call", "{:.1f}"),
           ("pre_accept p50/p99 ms", ("pre_accept_ms_p50", "pre_accept_ms_p99"), "{:.0f}/{:.0f}"),
           ("setup p50/p99 ms", ("setup_ms_p50", "setup_ms_p99"), "{:.0f}/{:.0f}"),
           ("in p50/p99 ms", ("inbound_ms_p50", "inbound_ms_p99"), "{:.0f}/{:.0f}"),
           ("out p50/p99 ms", ("outbound_ms_p50", "outbound_ms_p99"), "{:.0f}/{:.0f}"),
           ("max gap ms", "max_outbound_gap_ms", "{:.0f}"), ("loadgen cpu%", "loadgen_cpu_pct", "{:.0f}")]


def cell(result: dict, key, fmt: str) -> str:
    keys = key if isinstance(key, tuple) else (key,)
    values = [result.get(k) for k in keys]
    if any(v is None for v in values):
        return "-"
    if key in ("rss_kb", "rss_kb_per_call"):
        values = [values[0] / 1024]
    return fmt.format(*values)


def print_table(results: list[dict]) -> None:
    rows = [[name for name, _, _ in COLUMNS]] + \
           [[cell(r, key, fmt) for _, key, fmt in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(value.rjust(width) for value, width in zip(row, widths)))
    # The first call also pays one-time costs (plugins, DTLS certificate, TLS), so the
    # slope is fitted through the loaded runs only, not through the idle server.
    points = [(r["n"], r["rss_kb"]) for r in results if "rss_kb" in r]
    if len({n for n, _ in points}) >= 2:
        slope = np.polyfit([n for n, _ in points], [kb for _, kb in points], 1)[0]
        print(f"RSS slope over N (least squares over the runs): {slope / 1024:.2f} MB per call")
        threads = [(r["n"], r["threads"]) for r in results if "threads" in r]
        print(f"Thread slope over N: {np.polyfit(*zip(*threads), 1)[0]:.2f} threads per call")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="5", help="comma-separated N values, e.g. 10,20")
    parser.add_argument("--seconds", type=float, default=20, help="steady measurement window per N")
    parser.add_argument("--warmup", type=float, default=3, help="seconds after setup before measuring")
    parser.add_argument("--ramp-ms", type=float, default=100, help="delay between call placements")
    parser.add_argument("--reply-ms", type=int, default=1000, help="fake AI reply length")
    parser.add_argument("--setup-timeout", type=float, default=30)
    parser.add_argument("--perf", action="store_true",
                        help="perf record the server over each window (<out>/n<N>/perf.data)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    asyncio.get_running_loop().set_debug(False)
    args.out.mkdir(parents=True, exist_ok=True)
    payloads = encode_turns(440.0)
    results = []
    for n in (int(v) for v in args.calls.split(",")):
        try:
            results.append(await run_once(n, args, payloads, args.out))
        except (AssertionError, OSError, RuntimeError, asyncio.TimeoutError) as error:
            print(f"loadgen: N={n} failed: {error!r} (logs in {args.out}/n{n})", file=sys.stderr)
            results.append({"n": n, "error": repr(error)})
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print_table(results)
    return 0 if all(r.get("calls_failed") == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
