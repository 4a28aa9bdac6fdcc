// fake-realtime: the fake OpenAI Realtime (GA) server as a program, for tests
// written in other languages.
//
//   fake-realtime [--port N] [--reply-ms N] [--speed X] [--tone-hz N] [--delta-ms N]
//                 [--speech-rms X] [--function-call NAME:JSONARGS]... [--api-key K]
//
// --function-call may be repeated: the first turn of each session answers with
// the first call, the next turn with the second, and so on (the response after
// the function's output is a spoken reply).
//
// Listens on 127.0.0.1 (port 0 = ephemeral), prints exactly one line
// "ws://127.0.0.1:<port>/v1/realtime" on stdout, and runs until SIGTERM or
// SIGINT (exit 0). Exit 2 on bad arguments, 1 if it cannot listen.
//
// Control API on the same port (JSON):
//   GET  /_test/sessions            one object per session: path, query, authorization_present,
//                                   api_key_present, instructions, events (client event types in order,
//                                   appends counted in "appends"), input_ms, input_rms, input_dominant_hz,
//                                   speech_started, speech_stopped, responses_started, responses_cancelled,
//                                   response_active, input_tokens and output_tokens (usage summed over
//                                   every response.done sent), truncates [{item_id, audio_end_ms,
//                                   audio_sent_ms}], function_outputs, errors_sent, open,
//                                   append_onsets and delta_onsets (CLOCK_MONOTONIC seconds, the last 1000:
//                                   loud appends after quiet ones, each response's first loud delta sent)
//   POST /_test/sessions/<i>/drop   close session i abruptly (no close frame)
//   POST /_test/sessions/<i>/send   send the request body to session i as a text frame
//   POST /_test/sessions/<i>/reply  start a reply now, as if a turn ended (409 while a response is active)
#include <glib-unix.h>
#include <glib.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

#include "fake_realtime_server.h"

namespace {

constexpr const char* kUsage =
    "usage: fake-realtime [--port N] [--reply-ms N] [--speed X] [--tone-hz N] [--delta-ms N]\n"
    "                     [--speech-rms X] [--function-call NAME:JSONARGS]... [--api-key K]\n";

struct Options {
  // The control API reports counts and audio statistics only, so the program
  // keeps no raw appends or samples: long load tests stay small.
  fake_realtime::Behaviour behaviour{.keep_append_events = false, .keep_input_audio = false};
  long port = 0;
};

bool parse_long(const char* text, long min, long max, long& out) {
  char* end = nullptr;
  errno = 0;
  const long value = strtol(text, &end, 10);
  if (errno || end == text || *end || value < min || value > max)
    return false;
  out = value;
  return true;
}

bool parse_double(const char* text, double& out) {
  char* end = nullptr;
  errno = 0;
  const double value = g_ascii_strtod(text, &end);
  if (errno || end == text || *end)
    return false;
  out = value;
  return true;
}

// Returns an error message, or "" when every argument was understood.
std::string parse(int argc, char** argv, Options& options) {
  fake_realtime::Behaviour& b = options.behaviour;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h")
      return "help";
    if (i + 1 >= argc)
      return flag + " needs a value";
    const char* value = argv[++i];
    long number = 0;
    if (flag == "--port") {
      if (!parse_long(value, 0, 65535, options.port))
        return "--port must be 0..65535";
    } else if (flag == "--reply-ms") {
      if (!parse_long(value, 1, 600000, number))
        return "--reply-ms must be 1..600000";
      b.reply_ms = static_cast<int>(number);
    } else if (flag == "--delta-ms") {
      if (!parse_long(value, 1, 10000, number))
        return "--delta-ms must be 1..10000";
      b.delta_ms = static_cast<int>(number);
    } else if (flag == "--tone-hz") {
      if (!parse_long(value, 1, 11999, number))
        return "--tone-hz must be 1..11999";
      b.reply_tone_hz = static_cast<int>(number);
    } else if (flag == "--speed") {
      if (!parse_double(value, b.reply_speed) || !(b.reply_speed > 0))
        return "--speed must be a number > 0";
    } else if (flag == "--speech-rms") {
      if (!parse_double(value, b.speech_rms) || !(b.speech_rms > 0) || b.speech_rms > 1)
        return "--speech-rms must be in (0, 1]";
    } else if (flag == "--function-call") {
      const std::string spec = value;
      const size_t colon = spec.find(':');
      if (colon == std::string::npos || colon == 0)
        return "--function-call must be NAME:JSONARGS";
      b.function_calls.push_back({spec.substr(0, colon), spec.substr(colon + 1)});
    } else if (flag == "--api-key") {
      b.required_api_key = value;
    } else {
      return "unknown option " + flag;
    }
  }
  return "";
}

gboolean quit_loop(gpointer loop) {
  g_main_loop_quit(static_cast<GMainLoop*>(loop));
  return G_SOURCE_REMOVE;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  const std::string problem = parse(argc, argv, options);
  if (problem == "help") {
    fputs(kUsage, stdout);
    return 0;
  }
  if (!problem.empty()) {
    fprintf(stderr, "fake-realtime: %s\n%s", problem.c_str(), kUsage);
    return 2;
  }
  try {
    fake_realtime::Server server(options.behaviour, static_cast<uint16_t>(options.port));
    g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
    g_unix_signal_add(SIGTERM, quit_loop, loop);
    g_unix_signal_add(SIGINT, quit_loop, loop);
    printf("%s\n", server.url().c_str());
    fflush(stdout);
    g_main_loop_run(loop);
  } catch (const std::invalid_argument& e) {
    fprintf(stderr, "fake-realtime: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
