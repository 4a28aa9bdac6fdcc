"""A WhatsApp user played by aiortc 1.4.

The caller offers the way WhatsApp does (whatsapp-calling.md §6.1) as far as
aiortc allows, sends a per-caller test signal, records what it hears and applies
the business's answer.

SDP munging (aiortc cannot produce Meta's offer by itself):
- mid: aiortc numbers mids "0", "1"...; Meta uses "audio". The mid is renamed in
  the offer *before* setLocalDescription, so aiortc keys its transceiver by
  "audio" and matches the answer's `a=mid:audio` (BUNDLE group follows).
- Opus: aiortc 1.4 uses PT 96 without fmtp; the offer text uses PT 111 with
  Meta's fmtp. aiortc takes dynamic payload types from the answer
  (find_common_codecs), so it sends and decodes PT 111 afterwards.
- telephone-event/8000 on PT 126 is added to the text; aiortc cannot send DTMF,
  and ignores the codec if the answer keeps it.
- a=ptime:20 / a=maxptime:20 added (aiortc's Opus encoder uses 20 ms anyway).
- Fingerprints: aiortc lists sha-256, sha-384 and sha-512; only sha-256 is kept.
- a=end-of-candidates, a=ice-options and a=extmap are dropped (Meta's offer has
  none of them; without extmap the answer negotiates no header extensions).
- a=ice-lite (session level) is added when `ice_lite=True`, and aiortc's ICE
  agent is switched to the controlled role to behave like Meta's lite agent,
  which never nominates. aiortc stays a full agent underneath (it also sends
  checks), which a controlling peer tolerates; the point of the attribute is
  that it makes the answerer (webrtcbin) take the controlling role as it must
  with Meta. Measured: aiortc connects with it against a full aiortc answerer
  (tests/e2e/test_fake_meta.py) and against webrtcbin 1.22.0, which then logs
  "we are in ice controlling mode: true" and answers a=setup:active.
Candidates are inline because aiortc gathers inside setLocalDescription.
"""
from __future__ import annotations

import asyncio
import fractions
import math
import re
import time
import wave
from typing import Optional

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960                       # 20 ms at 48 kHz
META_OPUS_FMTP = ("maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;"
                  "sprop-maxcapturerate=16000;useinbandfec=1")


# ---- signals ---------------------------------------------------------------
class BurstSignal:
    """Bursts of sound and silence, e.g. 1.5 s of a tone then 1 s of silence,
    so an energy VAD sees separate turns.

    kind "tone": a sine at `frequency_hz`.
    kind "speech": a crude voice: harmonics of `frequency_hz` (the pitch)
    shaped by a 4 Hz syllable envelope.
    """

    def __init__(self, frequency_hz: float, *, kind: str = "tone", on_s: float = 1.5,
                 off_s: float = 1.0, amplitude: float = 0.3, bursts: Optional[int] = None):
        if kind not in ("tone", "speech"):
            raise ValueError(f"unknown signal kind {kind!r}")
        self.frequency_hz, self.kind = frequency_hz, kind
        self.on_samples = int(on_s * SAMPLE_RATE)
        self.period_samples = self.on_samples + int(off_s * SAMPLE_RATE)
        self.amplitude, self.bursts = amplitude, bursts

    def samples(self, start: int, count: int) -> np.ndarray:
        """int16 samples [start, start + count) of the signal."""
        n = np.arange(start, start + count)
        t = n / SAMPLE_RATE
        position = n % self.period_samples
        voiced = position < self.on_samples
        if self.bursts is not None:
            voiced &= (n // self.period_samples) < self.bursts
        if self.kind == "tone":
            wave_ = np.sin(2 * math.pi * self.frequency_hz * t)
        else:
            wave_ = sum(np.sin(2 * math.pi * self.frequency_hz * h * t) / h for h in range(1, 6))
            wave_ = wave_ * (0.6 + 0.4 * np.sin(2 * math.pi * 4.0 * t)) / 1.6
        fade = np.clip(np.minimum(position, self.on_samples - position) / 240.0, 0.0, 1.0)
        out = self.amplitude * wave_ * fade * voiced
        return np.round(out * 32767).astype(np.int16)


class SignalTrack(MediaStreamTrack):
    """An audio track producing a BurstSignal in 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, signal: BurstSignal):
        super().__init__()
        self.signal = signal
        self._sent = 0
        self._start: Optional[float] = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._sent / SAMPLE_RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pcm = self.signal.samples(self._sent, FRAME_SAMPLES)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent += FRAME_SAMPLES
        return frame


# ---- analysis --------------------------------------------------------------
def rms(pcm: np.ndarray) -> float:
    """RMS as a fraction of full scale."""
    if pcm.size == 0:
        return 0.0
    return float(np.sqrt(np.mean((pcm.astype(np.float64) / 32768.0) ** 2)))


def voiced_windows(pcm: np.ndarray, threshold: float = 0.01, window: int = FRAME_SAMPLES) -> np.ndarray:
    """Boolean per 20 ms window: RMS above `threshold`."""
    count = pcm.size // window
    if count == 0:
        return np.zeros(0, dtype=bool)
    frames = pcm[:count * window].astype(np.float64).reshape(count, window) / 32768.0
    return np.sqrt(np.mean(frames ** 2, axis=1)) > threshold


def dominant_hz(pcm: np.ndarray, sample_rate: int = SAMPLE_RATE, threshold: float = 0.01) -> float:
    """The strongest frequency over the voiced 20 ms windows (0.0 if none)."""
    voiced = voiced_windows(pcm, threshold)
    if not voiced.any():
        return 0.0
    frames = pcm[:voiced.size * FRAME_SAMPLES].reshape(voiced.size, FRAME_SAMPLES)[voiced]
    signal = frames.astype(np.float64).ravel()
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum) * sample_rate / signal.size)


class AudioRecorder:
    """Collects a remote track's decoded audio as 48 kHz mono int16."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self.frames = 0
        self.first_frame_at: Optional[float] = None
        self._task: Optional[asyncio.Task] = None

    def start(self, track: MediaStreamTrack) -> None:
        self._task = asyncio.ensure_future(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if self.first_frame_at is None:
                self.first_frame_at = time.monotonic()
            self.frames += 1
            for mono in resampler.resample(frame):
                self._chunks.append(mono.to_ndarray().reshape(-1).copy())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def pcm(self) -> np.ndarray:
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks)

    @property
    def seconds(self) -> float:
        return sum(chunk.size for chunk in self._chunks) / SAMPLE_RATE

    def voiced_seconds(self, threshold: float = 0.01) -> float:
        return float(voiced_windows(self.pcm, threshold).sum()) * FRAME_SAMPLES / SAMPLE_RATE

    def dominant_hz(self, threshold: float = 0.01) -> float:
        return dominant_hz(self.pcm, SAMPLE_RATE, threshold)

    def save_wav(self, path: str) -> None:
        with wave.open(path, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(self.pcm.tobytes())


# ---- SDP munging -------------------------------------------------------------
def _lines(sdp: str) -> list[str]:
    return [line for line in sdp.replace("\r\n", "\n").split("\n") if line]


def rename_mid(sdp: str, old: str, new: str) -> str:
    out = []
    for line in _lines(sdp):
        if line == f"a=mid:{old}":
            line = f"a=mid:{new}"
        elif line.startswith("a=group:BUNDLE"):
            items = [new if item == old else item for item in line.split()[1:]]
            line = "a=group:BUNDLE " + " ".join(items)
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def whatsapp_offer(sdp: str, *, ice_lite: bool) -> str:
    """Rewrites aiortc's offer text into the shape of Meta's (see module doc)."""
    lines = _lines(sdp)
    opus_pt = next(re.match(r"a=rtpmap:(\d+) opus/48000/2", l).group(1)
                   for l in lines if re.match(r"a=rtpmap:\d+ opus/48000/2", l))
    out: list[str] = []
    in_media = False
    for line in lines:
        if line.startswith("m=audio"):
            in_media = True
            proto = line.split()[:3]
            out.append(" ".join(proto + ["111", "126"]))
            continue
        if not in_media:
            out.append(line)
            if line.startswith("t=") and ice_lite:
                out.append("a=ice-lite")
            continue
        if line.startswith(("a=end-of-candidates", "a=ice-options", "a=extmap:")):
            continue
        if line.startswith("a=fingerprint:") and not line.startswith("a=fingerprint:sha-256 "):
            continue
        rtp = re.match(r"a=(rtpmap|fmtp|rtcp-fb):(\d+)(.*)", line)
        if rtp:
            if rtp.group(2) != opus_pt:
                continue                      # PCMU/PCMA and friends: Meta offers Opus only
            if rtp.group(1) == "rtpmap":
                out.append("a=rtpmap:111 opus/48000/2")
                out.append("a=rtcp-fb:111 transport-cc")
                out.append(f"a=fmtp:111 {META_OPUS_FMTP}")
                out.append("a=rtpmap:126 telephone-event/8000")
                out.append("a=maxptime:20")
                out.append("a=ptime:20")
            continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


# ---- the caller ----------------------------------------------------------------
class Caller:
    """One WhatsApp user: offer, send a signal, apply the answer, record audio."""

    def __init__(self, name: str, wa_id: str, *, frequency_hz: float = 440.0,
                 signal: Optional[BurstSignal] = None, ice_lite: bool = True):
        self.name, self.wa_id = name, wa_id
        self.ice_lite = ice_lite
        self.signal = signal or BurstSignal(frequency_hz)
        self.pc = RTCPeerConnection()
        self.received = AudioRecorder()
        self.offer_sdp = ""
        self.answer_sdp = ""
        self.connected = asyncio.Event()
        self.ended = asyncio.Event()
        self.states: list[str] = []
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("track", self._on_track)

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    @property
    def ice_connection_state(self) -> str:
        return self.pc.iceConnectionState

    def _on_state(self) -> None:
        state = self.pc.connectionState
        self.states.append(state)
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.ended.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.received.start(track)

    async def make_offer(self) -> str:
        """Creates the Meta-shaped offer with all candidates inline."""
        self.pc.addTransceiver(SignalTrack(self.signal), direction="sendrecv")
        offer = await self.pc.createOffer()
        offer_mid = re.search(r"^a=mid:(\S+)", offer.sdp, re.M).group(1)
        await self.pc.setLocalDescription(
            RTCSessionDescription(rename_mid(offer.sdp, offer_mid, "audio"), "offer"))
        if self.ice_lite:
            # Behave like Meta's lite agent: the answerer controls and nominates.
            for transceiver in self.pc.getTransceivers():
                ice = transceiver.sender.transport.transport
                ice._connection.ice_controlling = False
                ice._role_set = True
        self.offer_sdp = whatsapp_offer(self.pc.localDescription.sdp, ice_lite=self.ice_lite)
        return self.offer_sdp

    async def apply_answer(self, sdp: str) -> None:
        self.answer_sdp = sdp
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def hang_up(self) -> None:
        """Stops sending and closes the peer connection."""
        await self.received.stop()
        await self.pc.close()
        self.ended.set()


class Callee:
    """A WhatsApp user called by the business: answers its offer, sends a
    signal, records what it hears."""

    def __init__(self, wa_id: str, *, signal: Optional[BurstSignal] = None):
        self.wa_id = wa_id
        self.signal = signal or BurstSignal(500, bursts=0)
        self.pc = RTCPeerConnection()
        self.received = AudioRecorder()
        self.offer_sdp = ""
        self.answer_sdp = ""
        self.connected = asyncio.Event()
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("track", self._on_track)

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected":
            self.connected.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.received.start(track)

    async def answer(self, offer_sdp: str) -> str:
        """The answer to the business's offer, every candidate inline."""
        self.offer_sdp = offer_sdp
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        self.pc.addTrack(SignalTrack(self.signal))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.answer_sdp = self.pc.localDescription.sdp
        return self.answer_sdp

    async def hang_up(self) -> None:
        await self.received.stop()
        await self.pc.close()
