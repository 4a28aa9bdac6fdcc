"""Load generator for bench/run: N concurrent simulated WhatsApp calls against
the real voicebridge server, with the fake Graph API and fake-realtime of the
end-to-end tests, measured from outside the server (see bench/README.md).

Run inside a private network namespace (bench/run does that). One run per N:
fresh processes, calls placed with a small ramp, a warm-up, then a steady
window over which CPU, gaps and latencies are measured. Prints one table row
per N and writes everything to <out>/results.json.

Cheap callers: the N WhatsApp callers are peers of one single-threaded C++
process, `voicebridge-bench-callers` (JSON lines on its stdin/stdout, see
bench/README.md), which sends pre-encoded Opus and counts what comes back. Sound
onsets on the server's WebSocket are timed by fake-realtime itself (GET
/_test/sessions), so nothing sits between the server and fake-realtime.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

import numpy as np  # noqa: E402

import harness  # noqa: E402
from fake_meta.caller import FRAME_SAMPLES, SAMPLE_RATE, BurstSignal  # noqa: E402

TONE_ON_S, TONE_OFF_S = 1.0, 3.0           # one caller turn every 4 s
FRAME_S = 0.020
MIN_RTP_RATE = 45                          # packets/s a healthy call receives (50 sent)
MATCH_WINDOW_S = 1.0                       # latencies above this are unmatched, not latencies
CALLERS_LOCAL_IP = "198.18.0.2"            # tests/netns-run's second veth address
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# ---- /proc ----------------------------------------------------------------------------
def cpu_seconds(pid: int | str) -> float:
    """utime + stime of a whole process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_jiffies() -> tuple[int, int]:
    """(steal, total) of the machine's aggregate cpu line: steal is the time the host ran something else."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return fields[7], sum(fields[:8])


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KB


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of a process so far
    (threads that ended meanwhile are not counted: calls stay up over a window)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                total += sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
        except (OSError, ValueError):
            continue
    return total


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def thread_name(pid: int, task: str) -> str:
    """A thread's name with digits as N: one name for all pacing threads, all receive threads, ...
    (GStreamer names its threads after pads). Raises OSError if the thread has ended."""
    with open(f"/proc/{pid}/task/{task}/comm") as f:
        return re.sub(r"\d+", "N", f.read().strip())


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """utime + stime per thread name, summed over the process's threads of that name."""
    seconds: dict[str, float] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            name, spent = thread_name(pid, task), cpu_seconds(f"{pid}/task/{task}")
        except (OSError, ValueError, IndexError):
            continue
        seconds[name] = seconds.get(name, 0.0) + spent
    return seconds


def thread_names(pid: int) -> dict[str, int]:
    """How many threads of the process carry each name."""
    names: dict[str, int] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            name = thread_name(pid, task)
        except OSError:
            continue
        names[name] = names.get(name, 0) + 1
    return dict(sorted(names.items(), key=lambda item: -item[1]))


def per_thread_cpu_pct(before: dict[str, float], after: dict[str, float], window: float,
                       per_call: int) -> dict[str, float]:
    """% of a core per call for each thread name that ran over the window, the busiest first."""
    spent = {name: seconds - before.get(name, 0.0) for name, seconds in after.items()}
    return {name: round(seconds / window * 100 / per_call, 3)
            for name, seconds in sorted(spent.items(), key=lambda item: -item[1]) if seconds > 0}


def percentile(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]        # nearest rank


# ---- pre-encoded caller audio ------------------------------------------------------------
# What WhatsApp sends (its offer: maxaveragebitrate=20000; maxplaybackrate=16000;
# sprop-maxcapturerate=16000, no sprop-stereo): mono wideband voice at ~20 kbit/s.
CALLER_OPUSENC = "opusenc bitrate=20000 bandwidth=wideband audio-type=voice frame-size=20"


def encode_turns(frequency_hz: float) -> list[bytes]:
    """One period (tone then silence) as 20 ms Opus payloads, encoded once with
    GStreamer's opusenc like a WhatsApp client's, before any call."""
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstApp", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    frames = int((TONE_ON_S + TONE_OFF_S) * SAMPLE_RATE) // FRAME_SAMPLES
    pcm = BurstSignal(frequency_hz, on_s=TONE_ON_S, off_s=TONE_OFF_S).samples(0, frames * FRAME_SAMPLES)
    pipeline = Gst.parse_launch(
        f"appsrc name=src format=time caps=audio/x-raw,format=S16LE,layout=interleaved,rate={SAMPLE_RATE},"
        f"channels=1 ! {CALLER_OPUSENC} ! appsink name=sink sync=false")
    source, sink = pipeline.get_by_name("src"), pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    source.emit("push-buffer", Gst.Buffer.new_wrapped(pcm.astype("<i2").tobytes()))
    source.emit("end-of-stream")
    payloads = []
    while (sample := sink.emit("pull-sample")) is not None:
        buffer = sample.get_buffer()
        if not buffer.has_flags(Gst.BufferFlags.HEADER):
            payloads.append(buffer.extract_dup(0, buffer.get_size()))
    pipeline.set_state(Gst.State.NULL)
    # The encoder's lookahead adds one packet at the end of the stream.
    if len(payloads) < frames:
        raise RuntimeError(f"the Opus encoder gave {len(payloads)} payloads for {frames} frames")
    return payloads[:frames]


def write_payloads(payloads: list[bytes], path: Path) -> None:
    """The callers' --payloads file: [2-byte big-endian length][payload] per 20 ms frame."""
    path.write_bytes(b"".join(struct.pack(">H", len(p)) + p for p in payloads))


# ---- the callers process -------------------------------------------------------------------
class CallersProcess:
    """voicebridge-bench-callers: N caller peers in one process, driven by JSON
    lines (bench/README.md, "The callers process"). Events are routed to the
    BenchCaller of their peer id; `window` events answer window()."""

    def __init__(self, binary: Path, payloads_path: Path, tone_frames: int, log_path: Path):
        self.argv = [str(binary), "--local-ip", CALLERS_LOCAL_IP, "--payloads", str(payloads_path),
                     "--tone-frames", str(tone_frames)]
        self.log_path = log_path
        self.process: Optional[asyncio.subprocess.Process] = None
        self.peers: dict[int, BenchCaller] = {}
        self._windows: asyncio.Queue[dict] = asyncio.Queue()
        self._reader: Optional[asyncio.Task] = None
        self.protocol_errors: list[str] = []

    async def start(self) -> None:
        if not Path(self.argv[0]).exists():
            raise FileNotFoundError(f"{self.argv[0]} does not exist (not built?)")
        self._log = open(self.log_path, "wb")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=self._log, limit=1 << 22, preexec_fn=harness._die_with_parent)
        self._reader = asyncio.ensure_future(self._read_events())

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def send(self, command: dict) -> None:
        if self.process.returncode is not None or self.process.stdin.is_closing():
            raise RuntimeError(f"voicebridge-bench-callers exited with {self.process.returncode} "
                               f"(see {self.log_path})")
        self.process.stdin.write(json.dumps(command).encode() + b"\n")

    async def window(self, timeout: float = 10) -> dict:
        """Counters of every peer since the previous window, and the process's CPU."""
        self.send({"cmd": "window"})
        return await asyncio.wait_for(self._windows.get(), timeout)

    async def _read_events(self) -> None:
        while line := await self.process.stdout.readline():
            try:
                event = json.loads(line)
                kind = event["event"]
            except (ValueError, KeyError, TypeError):
                self._protocol_error(f"unreadable event line {line[:200]!r}")
                continue
            if kind == "window":
                self._windows.put_nowait(event)
                continue
            peer = self.peers.get(event.get("id"))
            if peer is None:
                self._protocol_error(f"event for an unknown peer: {line[:200]!r}")
                continue
            peer.on_event(kind, event)
        for peer in self.peers.values():         # the process is gone: nobody is connected any more
            if not peer.hung_up:
                peer.on_event("failed", {"reason": "voicebridge-bench-callers exited"})

    def _protocol_error(self, problem: str) -> None:
        self.protocol_errors.append(problem)
        print(f"loadgen: callers: {problem}", file=sys.stderr)

    async def stop(self, grace: float = 5) -> Optional[int]:
        if self.process is None:
            return None
        if self.process.returncode is None:
            try:
                self.send({"cmd": "quit"})
                self.process.stdin.close()
                await asyncio.wait_for(self.process.wait(), grace)
            except (RuntimeError, OSError, asyncio.TimeoutError):
                if self.process.returncode is None:
                    self.process.send_signal(signal.SIGKILL)
                    await self.process.wait()
        if self._reader:
            await asyncio.gather(self._reader, return_exceptions=True)
        self._log.close()
        return self.process.returncode


@dataclass
class CallerTimes:
    """Event times of one caller (CLOCK_MONOTONIC seconds, as time.monotonic())."""
    connected_at: Optional[float] = None
    failed: Optional[str] = None
    tones: list[float] = field(default_factory=list)       # tone starts sent
    onsets: list[float] = field(default_factory=list)      # AI audio onsets heard


class BenchCaller:
    """One WhatsApp caller: a peer of the callers process. Has what the
    end-to-end harness needs of a caller (name, wa_id, offer_sdp, make_offer,
    apply_answer, hang_up)."""

    def __init__(self, peer_id: int, name: str, wa_id: str, callers: CallersProcess):
        self.peer_id, self.name, self.wa_id = peer_id, name, wa_id
        self.callers = callers
        self.offer_sdp = ""
        self.times = CallerTimes()
        self._offer: Optional[asyncio.Future[str]] = None      # while make_offer() waits
        self._settled = asyncio.Event()           # connected or failed
        self.hung_up = False
        callers.peers[peer_id] = self

    def on_event(self, kind: str, event: dict) -> None:
        if kind == "offer":
            if self._offer and not self._offer.done():
                self._offer.set_result(event.get("sdp", ""))
        elif kind == "connected":
            self.times.connected_at = event.get("t")
            self._settled.set()
        elif kind == "failed":
            self.times.failed = self.times.failed or str(event.get("reason"))
            if self._offer and not self._offer.done():
                self._offer.set_exception(RuntimeError(f"{self.name}: {self.times.failed}"))
            self._settled.set()
        elif kind == "tone":
            self.times.tones.append(event["t"])
        elif kind == "onset":
            self.times.onsets.append(event["t"])

    async def make_offer(self, timeout: float = 10) -> str:
        self._offer = asyncio.get_running_loop().create_future()
        self.callers.send({"cmd": "offer", "id": self.peer_id})
        self.offer_sdp = await asyncio.wait_for(self._offer, timeout)
        return self.offer_sdp

    async def apply_answer(self, sdp: str) -> None:
        if not self.hung_up:
            self.callers.send({"cmd": "answer", "id": self.peer_id, "sdp": sdp})

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return self.times.connected_at is not None and self.times.failed is None

    async def hang_up(self) -> None:
        if not self.hung_up and self.callers.running:
            self.callers.send({"cmd": "hangup", "id": self.peer_id})
        self.hung_up = True


# ---- one run at N calls -------------------------------------------------------------------
def match_latencies(starts: list[float], ends: list[float]) -> list[float]:
    """For each start, the first end after it (within MATCH_WINDOW_S), in ms."""
    out = []
    for start in starts:
        later = [e for e in ends if start <= e <= start + MATCH_WINDOW_S]
        if later:
            out.append((later[0] - start) * 1000)
    return out


def within(times: list[float], t0: float, t1: float) -> list[float]:
    return [t for t in times if t0 <= t <= t1]


def setup_histogram_quantiles(metrics: str) -> dict:
    """p50/p99 upper bounds from the voicebridge_call_setup_seconds histogram."""
    buckets = []
    for m in re.finditer(r'^voicebridge_call_setup_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\}\s+(\S+)', metrics, re.M):
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return {}
    total = buckets[-1][1]
    return {f"p{q}": next(le for le, count in buckets if count >= q / 100 * total) * 1000 for q in (50, 99)}


def session_onsets(sessions: list[dict], caller: BenchCaller) -> tuple[list[float], list[float]]:
    """(append onsets, delta onsets) of the fake AI session carrying the caller's name."""
    matches = [s for s in sessions if caller.name in (s.get("instructions") or "")]
    if not matches:
        return [], []
    return matches[-1].get("append_onsets", []), matches[-1].get("delta_onsets", [])


async def run_once(n: int, args, payloads_path: Path, out_dir: Path) -> dict:
    log_dir = out_dir / f"n{n}"
    log_dir.mkdir(parents=True, exist_ok=True)
    callers_process = CallersProcess(args.callers_binary, payloads_path, int(TONE_ON_S / FRAME_S),
                                     log_dir / "callers.log")
    h = harness.Harness(f"bench-n{n}", log_dir=log_dir,
                        realtime_args=("--tone-hz", "1200", "--reply-ms", str(args.reply_ms)),
                        env={"MAX_CONCURRENT_CALLS": str(max(n, 1)), "G_MESSAGES_DEBUG": None,
                             "CALL_SETUP_TIMEOUT_S": "20"})
    result: dict = {"n": n}
    try:
        await callers_process.start()
        callers = [BenchCaller(i, f"Bench Caller {i:03d}", f"1555{i:07d}", callers_process) for i in range(n)]
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
        failures = sorted({c.times.failed for c in callers if c.times.failed})
        result.update(calls_up=len(up), calls_failed=n - len(up), caller_failures=failures,
                      setup_ms_p50=percentile(setup_ms, 50), setup_ms_p99=percentile(setup_ms, 99),
                      pre_accept_ms_p50=percentile(pre_accept_ms, 50),
                      pre_accept_ms_p99=percentile(pre_accept_ms, 99))

        await asyncio.sleep(args.warmup)
        realtime_pid, me = h.realtime.pid, os.getpid()
        t0 = time.monotonic()
        cpu0 = {p: cpu_seconds(p) for p in (pid, realtime_pid, me)}
        switches0, jiffies0, threads0 = context_switches(pid), cpu_jiffies(), thread_cpu_seconds(pid)
        start = await callers_process.window()        # resets the callers' counters
        profiler = await start_profiler(pid, args, log_dir) if args.perf else None
        stall_probe = await start_stall_probe(args)
        await asyncio.sleep(args.seconds)
        if profiler:
            await profiler.wait()
        end = await callers_process.window()          # counters over the window
        stalls = await stop_stall_probe(stall_probe)
        cpu1 = {p: cpu_seconds(p) for p in (pid, realtime_pid, me)}
        switches1, jiffies1, threads1 = context_switches(pid), cpu_jiffies(), thread_cpu_seconds(pid)
        t1 = time.monotonic()
        window, callers_window = t1 - t0, end["t"] - start["t"]
        per_call = max(len(up), 1)
        server_cpu = (cpu1[pid] - cpu0[pid]) / window * 100
        callers_cpu = (end["cpu_s"] - start["cpu_s"]) / callers_window * 100
        own_cpu = (cpu1[me] - cpu0[me]) / window * 100
        async with h.http.get(f"{h.base_url}/metrics") as response:
            metrics = await response.text()
        sessions = await h.sessions()
        inbound, outbound, tones, replies = [], [], 0, 0
        for c in up:
            appends, deltas = (within(times, t0, t1) for times in session_onsets(sessions, c))
            caller_tones, caller_onsets = within(c.times.tones, t0, t1), within(c.times.onsets, t0, t1)
            inbound += match_latencies(caller_tones, appends)
            outbound += match_latencies(deltas, caller_onsets)
            tones += len(caller_tones)
            replies += len(deltas)
        counters = {peer["id"]: peer for peer in end["peers"]}
        received = {c.peer_id: counters.get(c.peer_id, {}).get("received", 0) for c in up}
        # The caller with the largest gap, and when (CLOCK_MONOTONIC) that gap ended: to match it
        # with the server's log and the stall probe's late wakes.
        worst_gap = max((counters[c.peer_id] for c in up if counters.get(c.peer_id, {}).get("max_gap_ms") is not None),
                        key=lambda peer: peer["max_gap_ms"], default={})
        still_up = await h.active_calls()
        silent = [c for c in up if received[c.peer_id] < MIN_RTP_RATE * callers_window]
        result.update(
            window_s=window, calls_up_at_end=still_up, calls_without_media=len(silent),
            calls_failed=n - len(up) + len(silent) + max(0, len(up) - still_up),
            server_cpu_pct=server_cpu, server_cpu_pct_per_call=server_cpu / per_call,
            server_cpu_pct_per_call_by_thread=per_thread_cpu_pct(threads0, threads1, window, per_call),
            context_switches_per_call_s=(switches1 - switches0) / window / per_call,
            rss_kb=rss_kb(pid), threads=thread_count(pid), thread_names=thread_names(pid),
            rss_kb_per_call=(rss_kb(pid) - result["idle_rss_kb"]) / per_call,
            threads_per_call=(thread_count(pid) - result["idle_threads"]) / per_call,
            loadgen_cpu_pct=callers_cpu + own_cpu, loadgen_cpu_pct_per_call=(callers_cpu + own_cpu) / per_call,
            callers_cpu_pct=callers_cpu, loadgen_py_cpu_pct=own_cpu,
            fake_realtime_cpu_pct=(cpu1[realtime_pid] - cpu0[realtime_pid]) / window * 100,
            rtp_packets_per_call_s=sum(received.values()) / per_call / callers_window,
            max_outbound_gap_ms=worst_gap.get("max_gap_ms"), max_outbound_gap_end_t=worst_gap.get("max_gap_end_t"),
            max_outbound_gap_seq_step=worst_gap.get("max_gap_seq_step"),
            host_steal_pct=(jiffies1[0] - jiffies0[0]) / max(jiffies1[1] - jiffies0[1], 1) * 100,
            host_stall_ms=max((cpu["max_late_ms"] for cpu in stalls["cpus"]), default=None) if stalls else None,
            host_stalls=stalls,
            inbound_ms_p50=percentile(inbound, 50), inbound_ms_p99=percentile(inbound, 99),
            inbound_samples=len(inbound), tones_sent=tones,
            outbound_ms_p50=percentile(outbound, 50), outbound_ms_p99=percentile(outbound, 99),
            outbound_samples=len(outbound), replies_seen=replies,
            callers_protocol_errors=callers_process.protocol_errors,
            metrics_setup_ms=setup_histogram_quantiles(metrics))
        for c, call_id in zip(callers, call_ids):
            if call_id:
                await h.caller_hangs_up(c, call_id)
    finally:
        codes = await h.stop()
        result["callers_exit"] = await callers_process.stop()
        result["server_exit"] = codes.get("voicebridge")
    return result


async def start_profiler(pid: int, args, log_dir: Path) -> asyncio.subprocess.Process:
    """perf record of the server over the window (call graphs, 499 Hz)."""
    return await asyncio.create_subprocess_exec(
        "perf", "record", "-q", "-F", "499", "-g", "-p", str(pid), "-o", str(log_dir / "perf.data"),
        "--", "sleep", str(args.seconds), stdout=asyncio.subprocess.DEVNULL,
        stderr=open(log_dir / "perf.log", "wb"))


async def start_stall_probe(args) -> Optional[asyncio.subprocess.Process]:
    """voicebridge-bench-stall-probe over the window: the machine's own stalls (bench/stall_probe.cpp)."""
    if not args.stall_probe_binary.exists():
        print(f"loadgen: {args.stall_probe_binary} is missing: no host stall column", file=sys.stderr)
        return None
    return await asyncio.create_subprocess_exec(str(args.stall_probe_binary), stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)


async def stop_stall_probe(probe: Optional[asyncio.subprocess.Process]) -> Optional[dict]:
    """Its report: per CPU the latest wake (ms) and when wakes were over 20 ms late."""
    if probe is None:
        return None
    output, _ = await probe.communicate(b"")
    try:
        return json.loads(output)
    except json.JSONDecodeError:
        print(f"loadgen: the stall probe printed no report (exit {probe.returncode})", file=sys.stderr)
        return None


# ---- the table ------------------------------------------------------------------------------
COLUMNS = [("N", "n", "{:d}"), ("up", "calls_up", "{:d}"), ("failed", "calls_failed", "{:d}"),
           ("cpu%/call", "server_cpu_pct_per_call", "{:.2f}"), ("RSS MB", "rss_kb", "{:.1f}"),
           ("dRSS/call MB", "rss_kb_per_call", "{:.2f}"),
           ("thr/call", "threads_per_call", "{:.1f}"), ("cs/call/s", "context_switches_per_call_s", "{:.0f}"),
           ("pre_accept p50/p99 ms", ("pre_accept_ms_p50", "pre_accept_ms_p99"), "{:.0f}/{:.0f}"),
           ("setup p50/p99 ms", ("setup_ms_p50", "setup_ms_p99"), "{:.0f}/{:.0f}"),
           ("in p50/p99 ms", ("inbound_ms_p50", "inbound_ms_p99"), "{:.0f}/{:.0f}"),
           ("out p50/p99 ms", ("outbound_ms_p50", "outbound_ms_p99"), "{:.0f}/{:.0f}"),
           ("max gap ms", "max_outbound_gap_ms", "{:.0f}"), ("loadgen cpu%", "loadgen_cpu_pct", "{:.0f}"),
           ("steal%", "host_steal_pct", "{:.1f}"), ("host stall ms", "host_stall_ms", "{:.0f}")]


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
    parser.add_argument("--callers-binary", type=Path,
                        default=harness.BUILD_ROOT / "bench" / "voicebridge-bench-callers",
                        help="voicebridge-bench-callers (default: the build's)")
    parser.add_argument("--stall-probe-binary", type=Path,
                        default=harness.BUILD_ROOT / "bench" / "voicebridge-bench-stall-probe",
                        help="voicebridge-bench-stall-probe (default: the build's)")
    args = parser.parse_args()
    asyncio.get_running_loop().set_debug(False)
    args.out.mkdir(parents=True, exist_ok=True)
    payloads_path = args.out / "payloads.bin"
    write_payloads(encode_turns(440.0), payloads_path)
    results = []
    for n in (int(v) for v in args.calls.split(",")):
        try:
            results.append(await run_once(n, args, payloads_path, args.out))
        except (AssertionError, OSError, RuntimeError, asyncio.TimeoutError) as error:
            print(f"loadgen: N={n} failed: {error!r} (logs in {args.out}/n{n})", file=sys.stderr)
            results.append({"n": n, "error": repr(error)})
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print_table(results)
    return 0 if all(r.get("calls_failed") == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
