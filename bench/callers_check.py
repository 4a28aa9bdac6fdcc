"""Checks voicebridge-bench-callers against real webrtcbin answerers and
measures its CPU per peer.

Each of --peers answerers is a webrtcbin (GStreamer 1.22, bundle max-bundle,
non-trickle, ICE controlling, DTLS client: the server's role) that sends Opus of
audiotestsrc ticks (short beeps in silence, so the callers see onsets) and
counts the caller's RTP after rtpopusdepay. The callers binary is driven over
its stdin/stdout JSON lines (bench/README.md, "The callers process"). With --bad-fingerprint one
more answerer announces a wrong a=fingerprint: its peer must fail.

Counts only, never timings: exits 1 unless every peer connected, received RTP
(window event), saw a tone start and an onset, and every answerer received the
caller's RTP (and the bad peer failed with a fingerprint mismatch).

With --echo, voicebridge-bench-callers-echo plays the server's side instead
(ICE controlling, DTLS client, every RTP packet sent back): cheap enough to
measure the callers' CPU at N = 50..100, where that many webrtcbin answerers
would not fit on the machine. It answers the callers' own tone, so the onset
check needs the payloads' silence frames to be small (they are: wideband Opus
of digital silence is 8-9 bytes).

Needs a network namespace (libnice ignores loopback):
  tests/netns-run /usr/bin/python3 bench/callers_check.py \
      --callers build-x/bench/voicebridge-bench-callers --peers 10 --seconds 10
  tests/netns-run /usr/bin/python3 bench/callers_check.py \
      --callers build-x/bench/voicebridge-bench-callers --peers 100 --seconds 20 \
      --echo build-x/bench/voicebridge-bench-callers-echo
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

CALLERS_IP = "198.18.0.2"
ECHO_IP = "198.18.0.1"
OPUS_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"
SEND_BRANCH = ("audiotestsrc is-live=true do-timestamp=true wave=ticks tick-interval={interval} freq=700 "
               "volume=0.5 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=1 ! "
               "opusenc bitrate=20000 bandwidth=wideband frame-size=20 audio-type=voice dtx=false ! "
               "rtpopuspay pt=111")  # the server's settings: silence is 8-9 bytes
TONE_FRAMES, SILENT_FRAMES = 50, 75


def encode_payloads(path: str) -> None:
    """One period for --payloads: 1 s of a 440 Hz tone, then 1.5 s of silence."""
    pipeline = Gst.parse_launch(
        "audiotestsrc name=src wave=sine freq=440 samplesperbuffer=960 "
        f"num-buffers={TONE_FRAMES + SILENT_FRAMES} ! audio/x-raw,rate=48000,channels=1 ! "
        "volume name=gain ! opusenc bitrate=20000 bandwidth=wideband frame-size=20 audio-type=voice dtx=false ! "
        "appsink name=out sync=false")
    gain = pipeline.get_by_name("gain")
    # Silence after the tone frames: mute from the tone's end on (control by buffer count).
    count = [0]

    def mute_after_tone(_pad, info):
        count[0] += 1
        if count[0] == TONE_FRAMES + 1:
            gain.set_property("mute", True)
        return Gst.PadProbeReturn.OK
    pipeline.get_by_name("src").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, mute_after_tone)
    sink = pipeline.get_by_name("out")
    pipeline.set_state(Gst.State.PLAYING)
    records = []
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buffer = sample.get_buffer()
        data = buffer.extract_dup(0, buffer.get_size())
        records.append(struct.pack(">H", len(data)) + data)
    pipeline.set_state(Gst.State.NULL)
    if len(records) < TONE_FRAMES + SILENT_FRAMES:  # opusenc may add one at EOS (its lookahead)
        raise RuntimeError(f"opusenc gave {len(records)} payloads")
    with open(path, "wb") as out:
        out.write(b"".join(records[:TONE_FRAMES + SILENT_FRAMES]))


def tamper_fingerprint(sdp: str) -> str:
    """The same answer with the fingerprint's first byte changed."""
    prefix = "a=fingerprint:sha-256 "
    start = sdp.index(prefix) + len(prefix)
    first = sdp[start:start + 2]
    return sdp[:start] + ("00" if first != "00" else "11") + sdp[start + 2:]


class Answerer:
    """The server's side of one call: a webrtcbin answerer."""

    def __init__(self, peer_id: int, offer: str, on_answer, tick_interval_ns: int, bad_fingerprint: bool) -> None:
        self.peer_id, self.on_answer, self.bad_fingerprint = peer_id, on_answer, bad_fingerprint
        self.tick_interval_ns = tick_interval_ns
        self.received = 0
        self.sent = 0
        self.answered = False
        self.pipeline = Gst.Pipeline.new(f"answerer{peer_id}")
        self.webrtc = Gst.ElementFactory.make("webrtcbin")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.webrtc.set_property("latency", 40)
        self.pipeline.add(self.webrtc)
        # The ICE agent stays unconfigured: PyGObject's reference handling of the
        # GstWebRTCNice from "ice-agent" destroys it (gstreamer-webrtcbin.md §2.4).
        self.webrtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.SENDRECV,
                         Gst.Caps.from_string(OPUS_CAPS))
        self.webrtc.connect("pad-added", self._on_pad_added)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.pipeline.set_state(Gst.State.PLAYING)
        _, message = GstSdp.SDPMessage.new_from_text(offer)
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, message)
        self.webrtc.emit("set-remote-description", description,
                         Gst.Promise.new_with_change_func(self._on_offer_set))

    def _on_offer_set(self, _promise) -> None:
        GLib.idle_add(self._create_answer)

    def _create_answer(self) -> bool:
        promise = Gst.Promise.new()
        self.webrtc.emit("create-answer", None, promise)
        promise.wait()
        reply = promise.get_reply()
        if not reply.has_field("answer"):
            raise RuntimeError(f"answerer {self.peer_id}: create-answer failed: {reply.to_string()}")
        answer = reply.get_value("answer")
        self.webrtc.emit("set-local-description", answer, Gst.Promise.new_with_change_func(self._on_answer_set))
        return False

    def _on_answer_set(self, _promise) -> None:
        GLib.idle_add(self._link_send_branch)
        GLib.timeout_add(3000, self._send_answer)  # gathering never completing must not stall us

    def _link_send_branch(self) -> bool:
        branch = Gst.parse_bin_from_description(SEND_BRANCH.format(interval=self.tick_interval_ns), True)
        self.pipeline.add(branch)
        sink = self.webrtc.get_static_pad("sink_0")
        if sink is None or branch.get_static_pad("src").link(sink) != Gst.PadLinkReturn.OK:
            raise RuntimeError(f"answerer {self.peer_id}: cannot link the send branch to sink_0")
        sink.add_probe(Gst.PadProbeType.BUFFER, self._count_sent)
        branch.sync_state_with_parent()  # after linking: a live source pushing unlinked stops for good
        return False

    def _count_sent(self, _pad, _info) -> Gst.PadProbeReturn:
        self.sent += 1
        return Gst.PadProbeReturn.OK

    def _on_gathering(self, *_args) -> None:
        if self.webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self._send_answer)

    def _send_answer(self) -> bool:
        if self.answered:
            return False
        self.answered = True
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        self.on_answer(self.peer_id, tamper_fingerprint(sdp) if self.bad_fingerprint else sdp)
        return False

    def _on_pad_added(self, _webrtc, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        depay = Gst.ElementFactory.make("rtpopusdepay")
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("async", False)
        sink.set_property("sync", False)
        for element in (depay, sink):
            self.pipeline.add(element)
            element.sync_state_with_parent()
        depay.link(sink)
        pad.link(depay.get_static_pad("sink"))
        depay.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._count)

    def _count(self, _pad, _info) -> Gst.PadProbeReturn:
        self.received += 1
        return Gst.PadProbeReturn.OK

    def stop(self) -> None:
        self.pipeline.set_state(Gst.State.NULL)


class Check:
    def __init__(self, args) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.answerers: dict[int, Answerer] = {}
        self.events: dict[str, list[dict]] = {}
        self.windows: list[dict] = []
        self.connected: set[int] = set()
        self.bad_id = args.peers if args.bad_fingerprint else None
        self.workdir = tempfile.TemporaryDirectory(prefix="callers-check-")
        payloads = os.path.join(self.workdir.name, "payloads.bin")
        encode_payloads(payloads)
        self.process = subprocess.Popen(
            [args.callers, "--local-ip", CALLERS_IP, "--payloads", payloads, "--tone-frames", str(TONE_FRAMES)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            stderr=None if args.verbose else subprocess.DEVNULL)
        threading.Thread(target=self._read_events, args=(self.process, self._on_event), daemon=True).start()
        self.echo = None
        self.echo_connected: set[int] = set()
        self.echo_failed: dict[int, str] = {}
        if args.echo:
            self.echo = subprocess.Popen([args.echo, "--local-ip", ECHO_IP], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, bufsize=1,
                                         stderr=None if args.verbose else subprocess.DEVNULL)
            threading.Thread(target=self._read_events, args=(self.echo, self._on_echo_event), daemon=True).start()

    def send(self, command: dict, process=None) -> None:
        process = process or self.process
        process.stdin.write(json.dumps(command) + "\n")
        process.stdin.flush()

    def _read_events(self, process, handler) -> None:
        for line in process.stdout:
            event = json.loads(line)
            GLib.idle_add(handler, event)
        if process is self.process:
            GLib.idle_add(self.loop.quit)

    def _on_echo_event(self, event: dict) -> bool:
        kind, peer_id = event["event"], event["id"]
        if kind == "answer":
            self._answer(peer_id, tamper_fingerprint(event["sdp"]) if peer_id == self.bad_id else event["sdp"])
        elif kind == "connected":
            self.echo_connected.add(peer_id)
        elif kind == "failed":
            self.echo_failed[peer_id] = event["reason"]
        return False

    def _on_event(self, event: dict) -> bool:
        kind = event["event"]
        self.events.setdefault(kind, []).append(event)
        if kind == "offer" and self.echo:
            self.send({"cmd": "offer", "id": event["id"], "sdp": event["sdp"]}, self.echo)
        elif kind == "offer":
            peer_id = event["id"]
            self.answerers[peer_id] = Answerer(peer_id, event["sdp"], self._answer,
                                               self.args.tick_ms * 1_000_000, peer_id == self.bad_id)
        elif kind == "connected":
            self.connected.add(event["id"])
            if len(self.connected) == self.args.peers:
                print(f"all {self.args.peers} peers connected; warming up {self.args.warmup} s", file=sys.stderr)
                GLib.timeout_add(int(self.args.warmup * 1000), self._start_window)
        elif kind == "failed":
            print(f"peer {event['id']} failed: {event['reason']}", file=sys.stderr)
        elif kind == "window":
            self.windows.append(event)
            if len(self.windows) == 2:
                self.send({"cmd": "quit"})
        return False

    def _answer(self, peer_id: int, sdp: str) -> None:
        self.send({"cmd": "answer", "id": peer_id, "sdp": sdp})

    def _start_window(self) -> bool:
        self.send({"cmd": "window"})
        GLib.timeout_add(int(self.args.seconds * 1000), self._end_window)
        return False

    def _end_window(self) -> bool:
        self.send({"cmd": "window"})
        return False

    def _give_up(self) -> bool:
        print(f"timeout: {len(self.connected)} of {self.args.peers} peers connected", file=sys.stderr)
        self.send({"cmd": "quit"})
        return False

    def run(self) -> int:
        total = self.args.peers + (1 if self.bad_id is not None else 0)
        for peer_id in range(total):
            self.send({"cmd": "offer", "id": peer_id})
        GLib.timeout_add(int((self.args.connect_timeout + self.args.warmup + self.args.seconds) * 1000),
                         self._give_up)
        self.loop.run()
        self.process.wait(timeout=10)
        if self.echo:
            self.send({"cmd": "quit"}, self.echo)
            self.echo.wait(timeout=10)
        for answerer in self.answerers.values():
            answerer.stop()
        return self.report()

    def report(self) -> int:
        problems = []
        good = [i for i in range(self.args.peers)]
        by_id = lambda kind: {e["id"] for e in self.events.get(kind, [])}  # noqa: E731
        for kind in ("connected", "tone", "onset"):
            missing = sorted(set(good) - by_id(kind))
            if missing:
                problems.append(f"no {kind} event for peers {missing}")
        if self.process.returncode != 0:
            problems.append(f"callers exited with {self.process.returncode}")
        if len(self.windows) == 2:
            first, last = self.windows
            peers = {p["id"]: p for p in last["peers"]}
            silent = [i for i in good if peers.get(i, {}).get("received", 0) == 0]
            if silent:
                sent = {i: self.answerers[i].sent if i in self.answerers else None for i in silent}
                problems.append(f"peers {silent} received no RTP in the window (their answerers sent {sent})")
            received = sum(peers[i]["received"] for i in good if i in peers)
            gaps = [peers[i]["max_gap_ms"] for i in good if i in peers]
            cpu = last["cpu_s"] - first["cpu_s"]
            span = last["t"] - first["t"]
            print(f"window {span:.1f} s: callers CPU {100 * cpu / span:.2f} % of a core for {self.args.peers} peers"
                  f" = {100 * cpu / span / self.args.peers:.3f} % per peer; RTP received "
                  f"{received / span / self.args.peers:.1f} packets/s per peer; max gap {max(gaps):.1f} ms;"
                  f" onsets {len(self.events.get('onset', []))}, tones {len(self.events.get('tone', []))}")
        else:
            problems.append("no steady window (not every peer connected)")
        if self.echo:
            unconnected = sorted(set(good) - self.echo_connected)
            if unconnected:
                problems.append(f"echo peers {unconnected} did not connect: "
                                f"{ {i: self.echo_failed.get(i) for i in unconnected} }")
        else:
            deaf = [i for i in good if i not in self.answerers or self.answerers[i].received == 0]
            if deaf:
                problems.append(f"answerers {deaf} received no RTP from their caller")
        if self.bad_id is not None:
            failed = [e for e in self.events.get("failed", []) if e["id"] == self.bad_id]
            if not failed or "fingerprint mismatch" not in failed[0]["reason"]:
                problems.append("the peer with a wrong answer fingerprint did not fail with a fingerprint mismatch")
            if self.bad_id in self.connected:
                problems.append("the peer with a wrong answer fingerprint connected")
        unexpected = [e for e in self.events.get("failed", []) if e["id"] != self.bad_id]
        if unexpected:
            problems.append(f"unexpected failures: {unexpected}")
        for problem in problems:
            print(f"FAIL: {problem}", file=sys.stderr)
        if not problems:
            print("OK", file=sys.stderr)
        return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", required=True, help="path of voicebridge-bench-callers")
    parser.add_argument("--peers", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="steady window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--tick-ms", type=int, default=1000, help="the answerers' beep interval")
    parser.add_argument("--echo", help="path of voicebridge-bench-callers-echo: play the server's side with it")
    parser.add_argument("--bad-fingerprint", action="store_true",
                        help="add a peer whose answer has a wrong fingerprint (must fail)")
    parser.add_argument("--verbose", action="store_true", help="show the callers' stderr")
    args = parser.parse_args()
    Gst.init(None)
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
