// Server configuration, read once at start from environment variables.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace vb {

struct IceSettings {
  std::string public_ip;  // advertised host candidate address (1:1 NAT); empty = local addresses only
  int port_min = 0, port_max = 0;  // 0/0 = any port
  std::string stun_server, turn_server;
};

struct RealtimeSettings {
  std::string url;
  std::string api_key;
  std::string model;  // OpenAI model name, or the Azure deployment
  bool azure = false;
  std::string voice;
  std::string instructions;
};

enum class LogFormat { Text, Json };

struct Config {
  int port = 8080;
  std::string verify_token, app_secret, access_token, phone_number_id;
  std::string graph_url = "https://graph.facebook.com/v23.0";
  RealtimeSettings realtime;
  IceSettings ice;
  int max_concurrent_calls = 100;
  int call_setup_timeout_s = 15;  // CALL_SETUP_TIMEOUT_S: ICE+DTLS must connect within this after pre_accept
  int media_timeout_s = 30;       // MEDIA_TIMEOUT_S: a connected call whose caller sent no RTP this long is ended
  int opus_complexity = 2;        // OPUS_COMPLEXITY: libopus complexity of the AI's voice (CPU vs quality)
  int webhook_max_age_s = 60;     // WEBHOOK_MAX_AGE_S: connects older than this are stale, not answered
  std::string database_url;       // DATABASE_URL: libpq URI or key=value string; empty = no database
  int database_pool_size = 4;     // DATABASE_POOL_SIZE
  std::string default_time_zone;  // DEFAULT_TIME_ZONE: IANA id for every caller; empty = from the country code
  LogFormat log_format = LogFormat::Text;  // LOG_FORMAT: text (GLib's own lines) or json (one object per line)
  int drain_timeout_s = 30;       // DRAIN_TIMEOUT_S: after SIGTERM, active calls get this long to end
  int reminder_tick_s = 15;             // REMINDER_TICK_S: how often the scheduler looks for due reminders
  int reminder_claim_timeout_s = 300;   // REMINDER_CLAIM_TIMEOUT_S: a claim this old is taken over
  int reminder_max_attempts = 3;        // REMINDER_MAX_ATTEMPTS: unanswered calls before a reminder is missed
  int reminder_retry_backoff_s = 300;   // REMINDER_RETRY_BACKOFF_S: wait before a retry, doubling each time

  // One log line of the effective settings, secrets shown as "(set)".
  std::string describe() const;
};

// Either a config or the list of every problem found, each naming its variable.
struct ConfigResult {
  std::optional<Config> config;
  std::vector<std::string> errors;
};

// Returns the value of an environment variable, or nullptr when unset.
using EnvLookup = std::function<const char*(const char* name)>;

// Production: load_config([](const char* n) { return g_getenv(n); }).
ConfigResult load_config(const EnvLookup& env);

}  // namespace vb
