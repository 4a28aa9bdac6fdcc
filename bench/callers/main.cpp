// voicebridge-bench-callers: N simulated WhatsApp callers in one
// single-threaded process, driven over stdin/stdout JSON lines by
// bench/loadgen.py (bench/README.md, "The callers process").

#include <arpa/inet.h>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "callers.h"
#include "dtls.h"
#include "events.h"
#include "log.h"
#include "payloads.h"

namespace {

constexpr const char *kUsage =
    "usage: voicebridge-bench-callers --local-ip IPV4 --payloads FILE [--tone-frames K]\n"
    "  Simulated WhatsApp callers (ICE-lite, DTLS server, SRTP, 20 ms Opus) driven by JSON\n"
    "  lines on stdin ({\"cmd\":\"offer|answer|hangup|window|quit\",...}); events on stdout.\n"
    "  --payloads FILE   one period of 20 ms Opus payloads: [2-byte big-endian length][bytes]...\n"
    "  --tone-frames K   frames from frame 0 that are tone (default 50, at most the period)\n";

struct Options {
  std::string local_ip;
  std::string payloads;
  long tone_frames = 50;
};

[[noreturn]] void bad_arguments(const std::string &message) {
  fprintf(stderr, "voicebridge-bench-callers: %s (--help for usage)\n", message.c_str());
  exit(2);
}

Options parse_options(int argc, char **argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view name = argv[i];
    if (name == "--help" || name == "-h") {
      fputs(kUsage, stdout);
      exit(0);
    }
    std::string value;
    if (const size_t equals = name.find('='); name.starts_with("--") && equals != std::string_view::npos) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      bad_arguments(std::string(name) + " needs a value");
    }
    if (name == "--local-ip") {
      in_addr address{};
      if (inet_pton(AF_INET, value.c_str(), &address) != 1) bad_arguments("--local-ip: not an IPv4 address: " + value);
      options.local_ip = value;
    } else if (name == "--payloads") {
      options.payloads = value;
    } else if (name == "--tone-frames") {
      char *end = nullptr;
      options.tone_frames = strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || options.tone_frames < 1)
        bad_arguments("--tone-frames: not a positive integer: " + value);
    } else {
      bad_arguments("unknown argument " + std::string(name));
    }
  }
  if (options.local_ip.empty()) bad_arguments("--local-ip is required");
  if (options.payloads.empty()) bad_arguments("--payloads is required");
  return options;
}

}  // namespace

int main(int argc, char **argv) {
  const Options options = parse_options(argc, argv);
  callers::Payloads payloads;
  if (std::string error = payloads.load(options.payloads); !error.empty()) bad_arguments("--payloads: " + error);
  if (static_cast<size_t>(options.tone_frames) > payloads.frames()) {
    bad_arguments("--tone-frames " + std::to_string(options.tone_frames) + " exceeds the period of " +
                  std::to_string(payloads.frames()) + " frames");
  }
  signal(SIGPIPE, SIG_IGN);  // a vanished reader shows up as EPIPE on stdout

  std::string error;
  std::unique_ptr<callers::DtlsContext> dtls = callers::DtlsContext::create(callers::DtlsRole::server, error);
  if (!dtls) {
    callers::log_line("%s", error.c_str());
    return 1;
  }
  callers::log_line("%zu frames per period (%ld of tone, then silence), local IP %s, certificate sha-256 %s",
                    payloads.frames(), options.tone_frames, options.local_ip.c_str(), dtls->fingerprint().c_str());

  callers::EventWriter events;
  callers::PeerEnvironment environment{*dtls, payloads, events, options.local_ip};
  callers::Callers loop(environment);
  return loop.run();
}
