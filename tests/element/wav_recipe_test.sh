#!/bin/sh
# Runs pipelines/wav-conversation.sh against the fake Realtime server: a test
# WAV (a 300 Hz "caller" tone, then silence) goes in, and the output WAV must
# contain the fake assistant's 440 Hz reply.
# Usage: wav_recipe_test.sh RECIPE FAKE_REALTIME_EXE PYTHON3_WITH_NUMPY
set -eu
recipe=$1
fake=$2
python=$3
work=$(mktemp -d)
fake_pid=
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$fake" >"$work/fake.out" 2>"$work/fake.err" &
fake_pid=$!
tries=0
until [ -s "$work/fake.out" ]; do
  tries=$((tries + 1))
  if [ $tries -gt 200 ] || ! kill -0 "$fake_pid" 2>/dev/null; then
    echo "fake-realtime did not start:" >&2
    cat "$work/fake.err" >&2
    exit 1
  fi
  sleep 0.05
done
url=$(head -n 1 "$work/fake.out")
echo "fake Realtime server at $url"

"$python" - "$work/in.wav" <<'PY'
import math, struct, sys, wave
rate = 24000
samples = [int(0.3 * 32767 * math.sin(2 * math.pi * 300 * i / rate)) for i in range(rate)]  # 1 s of "speech"
samples += [0] * (rate * 3 // 2)  # 1.5 s of silence: server VAD ends the turn
with wave.open(sys.argv[1], "wb") as out:
    out.setnchannels(1)
    out.setsampwidth(2)
    out.setframerate(rate)
    out.writeframes(struct.pack("<%dh" % len(samples), *samples))
PY

OPENAI_REALTIME_URL=$url OPENAI_API_KEY=sk-test timeout 60 "$recipe" "$work/in.wav" "$work/out.wav"

"$python" - "$work/out.wav" <<'PY'
import sys, wave
import numpy as np
with wave.open(sys.argv[1], "rb") as wav:
    assert wav.getframerate() == 24000 and wav.getnchannels() == 1, "unexpected format"
    audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
voiced = audio[np.abs(audio) > 0]
voiced_ms = len(voiced) * 1000 // 24000
print(f"output: {len(audio) * 1000 // 24000} ms, of which {voiced_ms} ms voiced")
if voiced_ms < 500:
    sys.exit("no reply in the output WAV")
spectrum = np.abs(np.fft.rfft(voiced))
peak_hz = np.fft.rfftfreq(len(voiced), 1 / 24000)[np.argmax(spectrum)]
print(f"dominant frequency of the reply: {peak_hz:.1f} Hz")
if abs(peak_hz - 440) > 10:
    sys.exit("the reply is not the fake assistant's 440 Hz tone")
PY
echo "OK"
