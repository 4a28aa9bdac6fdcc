// Environment variables read by load_config():
//
// | variable                     | default                           | valid values                                  |
// |------------------------------|-----------------------------------|-----------------------------------------------|
// | PORT                         | 8080                              | integer 1-65535                               |
// | WHATSAPP_VERIFY_TOKEN        | required                          | webhook verification token                    |
// | WHATSAPP_APP_SECRET          | required                          | Meta app secret (webhook signatures)          |
// | WHATSAPP_ACCESS_TOKEN        | required                          | Graph API bearer token                        |
// | WHATSAPP_PHONE_NUMBER_ID     | required                          | business phone number id                      |
// | WHATSAPP_GRAPH_URL           | https://graph.facebook.com/v23.0  | http:// or https:// URL                       |
// | OPENAI_API_KEY               | required unless Azure is set      | API key                                       |
// | OPENAI_REALTIME_URL          | wss://api.openai.com/v1/realtime  | ws, wss, http or https URL                    |
// | OPENAI_REALTIME_MODEL        | gpt-realtime                      | model name                                    |
// | OPENAI_VOICE                 | marin                             | voice name                                    |
// | ASSISTANT_INSTRUCTIONS       | short phone-assistant prompt      | text (not together with the _FILE variant)    |
// | ASSISTANT_INSTRUCTIONS_FILE  | unset                             | readable, non-empty text file                 |
// | AZURE_OPENAI_ENDPOINT        | unset                             | ws, wss, http or https URL  } all three       |
// | AZURE_OPENAI_API_KEY         | unset                             | API key                     } together, used  |
// | AZURE_OPENAI_DEPLOYMENT      | unset                             | deployment name             } instead of OpenAI|
// | ICE_PUBLIC_IP                | unset                             | IPv4 or IPv6 literal                          |
// | ICE_PORT_MIN / ICE_PORT_MAX  | unset (any port)                  | both or neither, 1024-65535, min <= max       |
// | STUN_SERVER                  | unset                             | stun://host[:port]                            |
// | TURN_SERVER                  | unset                             | turn://user:pass@host[:port] or turns://...   |
// | MAX_CONCURRENT_CALLS         | 100                               | integer 1-100000                              |
// | CALL_SETUP_TIMEOUT_S         | 15                                | integer 1-120                                 |
// | MEDIA_TIMEOUT_S              | 30                                | integer 5-600                                 |
// | OPUS_COMPLEXITY              | 2                                 | integer 0-10                                  |
// | WEBHOOK_MAX_AGE_S            | 60                                | integer 1-86400                               |
// | DATABASE_URL                 | unset (tools answer unavailable)  | libpq URI or key=value connection string      |
// | DATABASE_POOL_SIZE           | 4                                 | integer 1-64                                  |
// | DEFAULT_TIME_ZONE            | from the caller's country code    | IANA time zone id, e.g. Europe/Berlin         |
// | LOG_FORMAT                   | text                              | text or json (one JSON object per line)       |
// | DRAIN_TIMEOUT_S              | 30                                | integer 1-3600                                |
// | REMINDER_TICK_S              | 15                                | integer 1-3600                                |
// | REMINDER_CLAIM_TIMEOUT_S     | 300                               | integer 5-86400; keep it above the 75 s ring  |
// | REMINDER_MAX_ATTEMPTS        | 3                                 | integer 1-20                                  |
// | REMINDER_RETRY_BACKOFF_S     | 300 (doubling after each miss)    | integer 1-86400                               |
//
// An empty value counts as unset. With all three AZURE_* variables set, the OPENAI_API_KEY, OPENAI_REALTIME_URL and
// OPENAI_REALTIME_MODEL variables are ignored.
#include "config.h"

#include <gio/gio.h>
#include <glib.h>
#include <libpq-fe.h>

#include <string_view>

namespace vb {
namespace {

constexpr const char* kDefaultInstructions =
    "You are a friendly, concise voice assistant answering a phone call. Speak naturally in short sentences, "
    "in the caller's language, and ask one question at a time.";

class ConfigReader {
 public:
  explicit ConfigReader(const EnvLookup& env) : env_(env) {}

  std::vector<std::string>& errors() { return errors_; }

  // The value, or nullopt when unset or empty.
  std::optional<std::string> get(const char* name) const {
    const char* value = env_(name);
    if (!value || !*value) return std::nullopt;
    return std::string(value);
  }

  std::string required(const char* name) {
    auto value = get(name);
    if (!value) error(name, "required");
    return value.value_or("");
  }

  std::string optional(const char* name, const char* fallback) const { return get(name).value_or(fallback); }

  // Strict decimal integer in [min, max]; `fallback` when unset.
  int integer(const char* name, int fallback, int min, int max) {
    auto value = get(name);
    if (!value) return fallback;
    gint64 parsed = 0;
    if (!g_ascii_string_to_signed(value->c_str(), 10, min, max, &parsed, nullptr)) {
      error(name, "expected an integer between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                      quoted(*value));
      return fallback;
    }
    return static_cast<int>(parsed);
  }

  // A URL with one of `schemes` and a host; returned without a trailing '/'.
  std::string url(const char* name, const char* fallback, const std::vector<std::string_view>& schemes) {
    std::string value = optional(name, fallback);
    if (!is_url_with_scheme(value, schemes)) {
      std::string expected;
      for (auto scheme : schemes) expected += (expected.empty() ? "" : "/") + std::string(scheme);
      error(name, "expected a " + expected + " URL, got " + quoted(value));
      return value;
    }
    while (value.size() > 1 && value.back() == '/') value.pop_back();
    return value;
  }

  void error(const char* name, const std::string& why) { errors_.push_back(std::string(name) + ": " + why); }

  static std::string quoted(const std::string& value) { return "\"" + value + "\""; }

  static bool is_url_with_scheme(const std::string& value, const std::vector<std::string_view>& schemes) {
    g_autoptr(GUri) uri = g_uri_parse(value.c_str(), G_URI_FLAGS_NONE, nullptr);
    if (!uri || !g_uri_get_host(uri) || !*g_uri_get_host(uri)) return false;
    g_autofree char* scheme = g_ascii_strdown(g_uri_get_scheme(uri), -1);
    for (auto allowed : schemes)
      if (allowed == scheme) return true;
    return false;
  }

 private:
  const EnvLookup& env_;
  std::vector<std::string> errors_;
};

void read_instructions(ConfigReader& reader, RealtimeSettings& realtime) {
  auto text = reader.get("ASSISTANT_INSTRUCTIONS");
  auto file = reader.get("ASSISTANT_INSTRUCTIONS_FILE");
  if (text && file) {
    reader.error("ASSISTANT_INSTRUCTIONS_FILE", "set together with ASSISTANT_INSTRUCTIONS; set only one");
    return;
  }
  if (text) {
    realtime.instructions = *text;
    return;
  }
  if (!file) {
    realtime.instructions = kDefaultInstructions;
    return;
  }
  g_autofree char* contents = nullptr;
  gsize length = 0;
  g_autoptr(GError) error = nullptr;
  if (!g_file_get_contents(file->c_str(), &contents, &length, &error)) {
    reader.error("ASSISTANT_INSTRUCTIONS_FILE", std::string("cannot read: ") + error->message);
    return;
  }
  std::string instructions(contents, length);
  if (!g_utf8_validate(instructions.data(), static_cast<gssize>(instructions.size()), nullptr)) {
    reader.error("ASSISTANT_INSTRUCTIONS_FILE", ConfigReader::quoted(*file) + " is not UTF-8 text");
    return;
  }
  g_autofree char* stripped = g_strstrip(g_strdup(instructions.c_str()));
  if (!*stripped) {
    reader.error("ASSISTANT_INSTRUCTIONS_FILE", ConfigReader::quoted(*file) + " is empty");
    return;
  }
  realtime.instructions = stripped;
}

void read_realtime(ConfigReader& reader, RealtimeSettings& realtime) {
  const std::vector<std::string_view> kRealtimeSchemes = {"wss", "ws", "https", "http"};
  const char* const azure_names[] = {"AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_DEPLOYMENT"};
  std::vector<const char*> azure_missing;
  for (const char* name : azure_names)
    if (!reader.get(name)) azure_missing.push_back(name);

  realtime.voice = reader.optional("OPENAI_VOICE", "marin");
  read_instructions(reader, realtime);

  if (azure_missing.empty()) {
    realtime.azure = true;
    realtime.url = reader.url("AZURE_OPENAI_ENDPOINT", "", kRealtimeSchemes);
    realtime.api_key = *reader.get("AZURE_OPENAI_API_KEY");
    realtime.model = *reader.get("AZURE_OPENAI_DEPLOYMENT");
    return;
  }
  if (azure_missing.size() < std::size(azure_names)) {
    for (const char* name : azure_missing)
      reader.error(name, "required when any of AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY, "
                         "AZURE_OPENAI_DEPLOYMENT is set (Azure needs all three)");
    return;
  }
  auto key = reader.get("OPENAI_API_KEY");
  if (!key)
    reader.error("OPENAI_API_KEY", "required (or set AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY and "
                                   "AZURE_OPENAI_DEPLOYMENT)");
  realtime.api_key = key.value_or("");
  realtime.url = reader.url("OPENAI_REALTIME_URL", "wss://api.openai.com/v1/realtime", kRealtimeSchemes);
  realtime.model = reader.optional("OPENAI_REALTIME_MODEL", "gpt-realtime");
}

// stun://host[:port] or turn(s)://user:pass@host[:port], as webrtcbin expects them.
bool is_ice_server_uri(const std::string& value, bool turn) {
  g_autoptr(GUri) uri = g_uri_parse(value.c_str(), G_URI_FLAGS_HAS_PASSWORD, nullptr);
  if (!uri || !g_uri_get_host(uri) || !*g_uri_get_host(uri)) return false;
  std::string scheme = g_uri_get_scheme(uri);
  if (!turn) return scheme == "stun";
  if (scheme != "turn" && scheme != "turns") return false;
  const char* user = g_uri_get_user(uri);
  const char* password = g_uri_get_password(uri);
  return user && *user && password && *password;
}

void read_ice(ConfigReader& reader, IceSettings& ice) {
  if (auto ip = reader.get("ICE_PUBLIC_IP")) {
    g_autoptr(GInetAddress) address = g_inet_address_new_from_string(ip->c_str());
    if (address)
      ice.public_ip = *ip;
    else
      reader.error("ICE_PUBLIC_IP", "expected an IPv4 or IPv6 address, got " + ConfigReader::quoted(*ip));
  }

  bool has_min = reader.get("ICE_PORT_MIN").has_value();
  bool has_max = reader.get("ICE_PORT_MAX").has_value();
  if (has_min != has_max) {
    reader.error(has_min ? "ICE_PORT_MAX" : "ICE_PORT_MIN", "required when the other end of the ICE port range is set");
  } else if (has_min) {
    size_t errors_before = reader.errors().size();
    int min = reader.integer("ICE_PORT_MIN", 0, 1024, 65535);
    int max = reader.integer("ICE_PORT_MAX", 0, 1024, 65535);
    if (reader.errors().size() == errors_before) {
      if (min > max) {
        reader.error("ICE_PORT_MIN", "must not exceed ICE_PORT_MAX (" + std::to_string(min) + " > " +
                                         std::to_string(max) + ")");
      } else {
        ice.port_min = min;
        ice.port_max = max;
      }
    }
  }

  if (auto stun = reader.get("STUN_SERVER")) {
    if (is_ice_server_uri(*stun, false))
      ice.stun_server = *stun;
    else
      reader.error("STUN_SERVER", "expected stun://host:port, got " + ConfigReader::quoted(*stun));
  }
  if (auto turn = reader.get("TURN_SERVER")) {
    // The value holds a password: never echo it.
    if (is_ice_server_uri(*turn, true))
      ice.turn_server = *turn;
    else
      reader.error("TURN_SERVER", "expected turn://user:pass@host:port or turns://user:pass@host:port");
  }
}

void read_database(ConfigReader& reader, Config& config) {
  if (auto url = reader.get("DATABASE_URL")) {
    // The value may hold a password: never echo it.
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(url->c_str(), &error);
    if (options) {
      config.database_url = *url;
      PQconninfoFree(options);
    } else {
      std::string why = error ? error : "out of memory";
      while (!why.empty() && why.back() == '\n') why.pop_back();
      reader.error("DATABASE_URL", "not a libpq connection URI or key=value string: " + why);
      PQfreemem(error);
    }
  }
  config.database_pool_size = reader.integer("DATABASE_POOL_SIZE", config.database_pool_size, 1, 64);
  if (auto zone = reader.get("DEFAULT_TIME_ZONE")) {
    g_autoptr(GTimeZone) time_zone = g_time_zone_new_identifier(zone->c_str());
    if (time_zone)
      config.default_time_zone = *zone;
    else
      reader.error("DEFAULT_TIME_ZONE", "expected an IANA time zone such as Europe/Berlin, got " +
                                            ConfigReader::quoted(*zone));
  }
}

void read_operations(ConfigReader& reader, Config& config) {
  if (auto format = reader.get("LOG_FORMAT")) {
    if (*format == "text")
      config.log_format = LogFormat::Text;
    else if (*format == "json")
      config.log_format = LogFormat::Json;
    else
      reader.error("LOG_FORMAT", "expected text or json, got " + ConfigReader::quoted(*format));
  }
  config.drain_timeout_s = reader.integer("DRAIN_TIMEOUT_S", config.drain_timeout_s, 1, 3600);
}

// The reminder scheduler runs only with a database; the settings are checked regardless.
void read_reminders(ConfigReader& reader, Config& config) {
  config.reminder_tick_s = reader.integer("REMINDER_TICK_S", config.reminder_tick_s, 1, 3600);
  config.reminder_claim_timeout_s =
      reader.integer("REMINDER_CLAIM_TIMEOUT_S", config.reminder_claim_timeout_s, 5, 86400);
  config.reminder_max_attempts = reader.integer("REMINDER_MAX_ATTEMPTS", config.reminder_max_attempts, 1, 20);
  config.reminder_retry_backoff_s =
      reader.integer("REMINDER_RETRY_BACKOFF_S", config.reminder_retry_backoff_s, 1, 86400);
}

}  // namespace

ConfigResult load_config(const EnvLookup& env) {
  ConfigReader reader(env);
  Config config;
  config.port = reader.integer("PORT", config.port, 1, 65535);
  config.verify_token = reader.required("WHATSAPP_VERIFY_TOKEN");
  config.app_secret = reader.required("WHATSAPP_APP_SECRET");
  config.access_token = reader.required("WHATSAPP_ACCESS_TOKEN");
  config.phone_number_id = reader.required("WHATSAPP_PHONE_NUMBER_ID");
  config.graph_url = reader.url("WHATSAPP_GRAPH_URL", config.graph_url.c_str(), {"https", "http"});
  read_realtime(reader, config.realtime);
  read_ice(reader, config.ice);
  config.max_concurrent_calls = reader.integer("MAX_CONCURRENT_CALLS", config.max_concurrent_calls, 1, 100000);
  config.call_setup_timeout_s = reader.integer("CALL_SETUP_TIMEOUT_S", config.call_setup_timeout_s, 1, 120);
  config.media_timeout_s = reader.integer("MEDIA_TIMEOUT_S", config.media_timeout_s, 5, 600);
  config.opus_complexity = reader.integer("OPUS_COMPLEXITY", config.opus_complexity, 0, 10);
  config.webhook_max_age_s = reader.integer("WEBHOOK_MAX_AGE_S", config.webhook_max_age_s, 1, 86400);
  read_database(reader, config);
  read_operations(reader, config);
  read_reminders(reader, config);

  ConfigResult result;
  result.errors = std::move(reader.errors());
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

std::string Config::describe() const {
  auto secret = [](const std::string& value) { return value.empty() ? std::string("(unset)") : std::string("(set)"); };
  auto or_none = [](const std::string& value) { return value.empty() ? std::string("(none)") : value; };
  std::string ports = ice.port_min ? std::to_string(ice.port_min) + "-" + std::to_string(ice.port_max) : "any";
  return "port=" + std::to_string(port) + " graph_url=" + graph_url + " phone_number_id=" + phone_number_id +
         " verify_token=" + secret(verify_token) + " app_secret=" + secret(app_secret) +
         " access_token=" + secret(access_token) + " realtime=" + (realtime.azure ? "azure" : "openai") +
         " realtime_url=" + realtime.url + " model=" + realtime.model + " voice=" + realtime.voice +
         " api_key=" + secret(realtime.api_key) + " instructions=" + std::to_string(realtime.instructions.size()) +
         " bytes ice_public_ip=" + or_none(ice.public_ip) + " ice_ports=" + ports +
         " stun=" + or_none(ice.stun_server) + " turn=" + (ice.turn_server.empty() ? "(none)" : "(set)") +
         " max_concurrent_calls=" + std::to_string(max_concurrent_calls) +
         " call_setup_timeout_s=" + std::to_string(call_setup_timeout_s) +
         " media_timeout_s=" + std::to_string(media_timeout_s) +
         " opus_complexity=" + std::to_string(opus_complexity) +
         " webhook_max_age_s=" + std::to_string(webhook_max_age_s) + " database=" + secret(database_url) +
         " database_pool_size=" + std::to_string(database_pool_size) +
         " default_time_zone=" + (default_time_zone.empty() ? "(from caller)" : default_time_zone) +
         " log_format=" + (log_format == LogFormat::Json ? "json" : "text") +
         " drain_timeout_s=" + std::to_string(drain_timeout_s) +
         " reminder_tick_s=" + std::to_string(reminder_tick_s) +
         " reminder_claim_timeout_s=" + std::to_string(reminder_claim_timeout_s) +
         " reminder_max_attempts=" + std::to_string(reminder_max_attempts) +
         " reminder_retry_backoff_s=" + std::to_string(reminder_retry_backoff_s);
}

}  // namespace vb
