"""A bare webrtcbin floor for bench/floors.py: --pairs K pairs of webrtcbin
endpoints in this process, one pipeline per endpoint (as the server has one
per call), each sending Opus-encoded live silence and dropping what it
receives into a fakesink (no decode). Runs until SIGTERM, then exits 1
unless every endpoint received media; needs a network
namespace with a non-loopback interface (libnice ignores loopback).
"""
from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

SENDER = ("audiotestsrc is-live=true wave=silence samplesperbuffer=960 ! "
          "audio/x-raw,rate=48000,channels=1 ! opusenc bitrate=20000 bandwidth=wideband "
          "frame-size=20 audio-type=voice dtx=false ! rtpopuspay pt=111 ! "
          "application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! "
          "webrtcbin name=webrtc bundle-policy=max-bundle latency=40")


class Endpoint:
    def __init__(self) -> None:
        self.pipeline = Gst.parse_launch(SENDER)
        self.webrtc = self.pipeline.get_by_name("webrtc")
        self.webrtc.connect("pad-added", self._on_pad_added)
        self.peer: "Endpoint" | None = None
        self.sink: Gst.Element | None = None
        self.webrtc.connect("on-ice-candidate", self._on_candidate)
        self.pipeline.set_state(Gst.State.PLAYING)

    def _on_candidate(self, _webrtc, mline: int, candidate: str) -> None:
        GLib.idle_add(lambda: self.peer.webrtc.emit("add-ice-candidate", mline, candidate) and False)

    def _on_pad_added(self, _webrtc, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("async", False)
        self.sink = sink
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def set_description(self, kind: GstWebRTC.WebRTCSDPType, sdp_text: str, local: bool, then) -> None:
        _, message = GstSdp.SDPMessage.new_from_text(sdp_text)
        description = GstWebRTC.WebRTCSessionDescription.new(kind, message)
        promise = Gst.Promise.new_with_change_func(lambda _p: GLib.idle_add(lambda: then() and False))
        self.webrtc.emit("set-local-description" if local else "set-remote-description", description, promise)

    def create(self, what: str, then) -> None:
        def done(promise: Gst.Promise) -> None:
            reply = promise.get_reply()
            description = reply.get_value("offer" if what == "create-offer" else "answer")
            text = description.sdp.as_text()
            GLib.idle_add(lambda: then(text) and False)
        self.webrtc.emit(what, None, Gst.Promise.new_with_change_func(done))


def connect_pair(offerer: Endpoint, answerer: Endpoint) -> None:
    offerer.peer, answerer.peer = answerer, offerer
    offer_t, answer_t = GstWebRTC.WebRTCSDPType.OFFER, GstWebRTC.WebRTCSDPType.ANSWER

    def on_offer(offer: str) -> None:
        offerer.set_description(offer_t, offer, True, lambda: answerer.set_description(
            offer_t, offer, False, lambda: answerer.create("create-answer", on_answer)))

    def on_answer(answer: str) -> None:
        answerer.set_description(answer_t, answer, True, lambda: offerer.set_description(
            answer_t, answer, False, lambda: None))
    offerer.create("create-offer", on_offer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    Gst.init(None)
    loop = GLib.MainLoop()
    endpoints = []
    for _ in range(args.pairs):
        offerer, answerer = Endpoint(), Endpoint()
        endpoints += [offerer, answerer]
        connect_pair(offerer, answerer)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    loop.run()
    # Checked at the end only (a probe per buffer would add to the floor).
    receiving = sum(1 for e in endpoints if e.sink and e.sink.get_property("last-sample"))
    for endpoint in endpoints:
        endpoint.pipeline.set_state(Gst.State.NULL)
    print(f"{receiving} of {len(endpoints)} endpoints received media", file=sys.stderr)
    return 0 if receiving == len(endpoints) else 1


if __name__ == "__main__":
    sys.exit(main())
