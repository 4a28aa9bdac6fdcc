#!/bin/sh
# wav-conversation.sh IN.wav OUT.wav
#
# Plays IN.wav to the OpenAI Realtime API as if a caller were speaking (paced
# in real time by `identity sync=true`), and writes everything the element
# outputs - the AI's replies and the silence between them - to OUT.wav
# (24 kHz mono S16LE). The run ends by itself: after IN.wav ends the element
# plays out the pending reply, lingers briefly, then sends EOS. End IN.wav with
# a second or two of silence so server VAD sees the end of the turn.
#
# Environment:
#   OPENAI_API_KEY                API key (required by api.openai.com)
#   OPENAI_REALTIME_URL           WebSocket URL (default wss://api.openai.com/v1/realtime)
#   OPENAI_REALTIME_MODEL         model (default gpt-realtime)
#   OPENAI_REALTIME_VOICE         voice (default marin)
#   OPENAI_REALTIME_INSTRUCTIONS  system instructions (default: none)
#   GST_PLUGIN_PATH               must include the directory of libgstopenairealtime.so
#                                 unless the plugin is installed
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 IN.wav OUT.wav" >&2
  exit 2
fi
if [ ! -r "$1" ]; then
  echo "$0: cannot read $1" >&2
  exit 2
fi

# gst-launch joins its arguments and parses them again: quote every value
# (escaping its quotes) and leave unset ones out (an empty value would not parse).
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/["\\]/\\&/g')"; }
props="url=$(quote "${OPENAI_REALTIME_URL:-wss://api.openai.com/v1/realtime}")"
props="$props model=$(quote "${OPENAI_REALTIME_MODEL:-gpt-realtime}") voice=$(quote "${OPENAI_REALTIME_VOICE:-marin}")"
if [ -n "${OPENAI_API_KEY:-}" ]; then props="$props api-key=$(quote "$OPENAI_API_KEY")"; fi
if [ -n "${OPENAI_REALTIME_INSTRUCTIONS:-}" ]; then
  props="$props instructions=$(quote "$OPENAI_REALTIME_INSTRUCTIONS")"
fi

exec gst-launch-1.0 -e \
  filesrc location="$1" ! decodebin ! audioconvert ! audioresample ! \
  audio/x-raw,format=S16LE,rate=24000,channels=1,layout=interleaved ! \
  identity sync=true ! \
  openairealtime $props ! \
  wavenc ! filesink location="$2"
