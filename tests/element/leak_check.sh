#!/bin/sh
# Runs a test binary under GStreamer's leaks tracer and fails if any GstObject
# or mini object (buffer, message, ...) is still alive at gst_deinit().
# Usage: leak_check.sh TEST_BINARY [ARGS...]
set -u
log=$(mktemp)
trap 'rm -f "$log"' EXIT
GST_TRACERS=leaks GST_DEBUG="GST_TRACER:7" GST_DEBUG_NO_COLOR=1 "$@" >"$log" 2>&1
status=$?
grep -v "GST_TRACER" "$log" | grep -E "^\[ *(OK|FAILED|PASSED) *\]"
# One "object-alive" line per leaked object (the tracer's format line has %s).
alive=$(grep "object-alive, type-name" "$log" | grep -v "%s")
if [ -n "$alive" ]; then
  echo "leaked objects:"
  echo "$alive" | sed 's/.*object-alive, //'
  exit 1
fi
exit $status
