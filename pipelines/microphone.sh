#!/bin/sh
# microphone.sh
#
# Talk with the OpenAI Realtime API from the default microphone; its replies
# play on the default speaker. Barge-in works: speak over the AI and it stops.
# Use headphones: without echo cancellation the model hears itself. Stop with
# Ctrl-C.
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
  autoaudiosrc ! audioconvert ! audioresample ! \
  audio/x-raw,format=S16LE,rate=24000,channels=1,layout=interleaved ! \
  openairealtime $props ! \
  audioconvert ! audioresample ! autoaudiosink
