#include <gtest/gtest.h>

#include <glib.h>
#include <glib/gstdio.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "config.h"

namespace vb {
namespace {

using Env = std::map<std::string, std::string>;

Env minimal_env() {
  return {{"WHATSAPP_VERIFY_TOKEN", "verify"},
          {"WHATSAPP_APP_SECRET", "secret"},
          {"WHATSAPP_ACCESS_TOKEN", "access"},
          {"WHATSAPP_PHONE_NUMBER_ID", "12345"},
          {"OPENAI_API_KEY", "sk-test"}};
}

ConfigResult load(const Env& env) {
  return load_config([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

// The one error naming `variable`, or "" (failing the test) when there is not exactly one.
std::string error_for(const ConfigResult& result, const std::string& variable) {
  std::string found;
  int count = 0;
  for (const auto& error : result.errors)
    if (error.rfind(variable + ": ", 0) == 0) {
      found = error;
      ++count;
    }
  EXPECT_EQ(count, 1) << "errors naming " << variable;
  return found;
}

ConfigResult load_with(const std::string& name, const std::string& value) {
  Env env = minimal_env();
  env[name] = value;
  return load(env);
}

TEST(Config, Defaults) {
  auto result = load(minimal_env());
  ASSERT_TRUE(result.config);
  EXPECT_TRUE(result.errors.empty());
  const Config& config = *result.config;
  EXPECT_EQ(config.port, 8080);
  EXPECT_EQ(config.verify_token, "verify");
  EXPECT_EQ(config.app_secret, "secret");
  EXPECT_EQ(config.access_token, "access");
  EXPECT_EQ(config.phone_number_id, "12345");
  EXPECT_EQ(config.graph_url, "https://graph.facebook.com/v23.0");
  EXPECT_FALSE(config.realtime.azure);
  EXPECT_EQ(config.realtime.url, "wss://api.openai.com/v1/realtime");
  EXPECT_EQ(config.realtime.api_key, "sk-test");
  EXPECT_EQ(config.realtime.model, "gpt-realtime");
  EXPECT_EQ(config.realtime.voice, "marin");
  EXPECT_FALSE(config.realtime.instructions.empty());
  EXPECT_EQ(config.ice.public_ip, "");
  EXPECT_EQ(config.ice.port_min, 0);
  EXPECT_EQ(config.ice.port_max, 0);
  EXPECT_EQ(config.max_concurrent_calls, 100);
  EXPECT_EQ(config.call_setup_timeout_s, 15);
  EXPECT_EQ(config.media_timeout_s, 30);
  EXPECT_EQ(config.webhook_max_age_s, 60);
}

TEST(Config, AllValuesSet) {
  Env env = minimal_env();
  env.insert({{"PORT", "9000"},
              {"WHATSAPP_GRAPH_URL", "http://127.0.0.1:1234/v23.0/"},
              {"OPENAI_REALTIME_URL", "ws://127.0.0.1:5555/v1/realtime"},
              {"OPENAI_REALTIME_MODEL", "gpt-realtime-mini"},
              {"OPENAI_VOICE", "cedar"},
              {"ASSISTANT_INSTRUCTIONS", "Be brief."},
              {"ICE_PUBLIC_IP", "2001:db8::1"},
              {"ICE_PORT_MIN", "20000"},
              {"ICE_PORT_MAX", "20100"},
              {"STUN_SERVER", "stun://stun.example.org:3478"},
              {"TURN_SERVER", "turns://user:pa55@turn.example.org:5349"},
              {"MAX_CONCURRENT_CALLS", "100000"},
              {"CALL_SETUP_TIMEOUT_S", "120"},
              {"MEDIA_TIMEOUT_S", "600"},
              {"WEBHOOK_MAX_AGE_S", "1"}});
  auto result = load(env);
  ASSERT_TRUE(result.config) << (result.errors.empty() ? "" : result.errors[0]);
  const Config& config = *result.config;
  EXPECT_EQ(config.port, 9000);
  EXPECT_EQ(config.graph_url, "http://127.0.0.1:1234/v23.0");  // trailing slash dropped
  EXPECT_EQ(config.realtime.url, "ws://127.0.0.1:5555/v1/realtime");
  EXPECT_EQ(config.realtime.model, "gpt-realtime-mini");
  EXPECT_EQ(config.realtime.voice, "cedar");
  EXPECT_EQ(config.realtime.instructions, "Be brief.");
  EXPECT_EQ(config.ice.public_ip, "2001:db8::1");
  EXPECT_EQ(config.ice.port_min, 20000);
  EXPECT_EQ(config.ice.port_max, 20100);
  EXPECT_EQ(config.ice.stun_server, "stun://stun.example.org:3478");
  EXPECT_EQ(config.ice.turn_server, "turns://user:pa55@turn.example.org:5349");
  EXPECT_EQ(config.max_concurrent_calls, 100000);
  EXPECT_EQ(config.call_setup_timeout_s, 120);
  EXPECT_EQ(config.media_timeout_s, 600);
  EXPECT_EQ(config.webhook_max_age_s, 1);
}

TEST(Config, EveryMissingRequiredVariableIsNamed) {
  auto result = load({});
  EXPECT_FALSE(result.config);
  for (const char* name : {"WHATSAPP_VERIFY_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_ACCESS_TOKEN",
                           "WHATSAPP_PHONE_NUMBER_ID", "OPENAI_API_KEY"})
    EXPECT_NE(error_for(result, name).find("required"), std::string::npos) << name;
  EXPECT_EQ(result.errors.size(), 5u);
  EXPECT_EQ(error_for(result, "WHATSAPP_APP_SECRET"), "WHATSAPP_APP_SECRET: required");
}

TEST(Config, EmptyValueCountsAsUnset) {
  auto result = load_with("WHATSAPP_ACCESS_TOKEN", "");
  EXPECT_FALSE(result.config);
  EXPECT_EQ(error_for(result, "WHATSAPP_ACCESS_TOKEN"), "WHATSAPP_ACCESS_TOKEN: required");
}

TEST(Config, IntegersAreStrict) {
  struct Case {
    const char* name;
    const char* value;
  };
  for (auto [name, value] : {Case{"PORT", "0"}, Case{"PORT", "65536"}, Case{"PORT", "80x"}, Case{"PORT", " 80"},
                             Case{"PORT", "80 "}, Case{"PORT", "99999999999999999999999"}, Case{"PORT", "-1"},
                             Case{"PORT", "8e3"}, Case{"MAX_CONCURRENT_CALLS", "0"},
                             Case{"MAX_CONCURRENT_CALLS", "100001"}, Case{"CALL_SETUP_TIMEOUT_S", "121"},
                             Case{"CALL_SETUP_TIMEOUT_S", "1.5"},
                             Case{"MEDIA_TIMEOUT_S", "4"}, Case{"MEDIA_TIMEOUT_S", "601"}, Case{"WEBHOOK_MAX_AGE_S", "86401"},
                             Case{"WEBHOOK_MAX_AGE_S", "abc"}}) {
    auto result = load_with(name, value);
    EXPECT_FALSE(result.config) << name << "=" << value;
    std::string error = error_for(result, name);
    EXPECT_NE(error.find("expected an integer between"), std::string::npos) << error;
    EXPECT_NE(error.find(std::string("got \"") + value + "\""), std::string::npos) << error;
  }
  EXPECT_EQ(error_for(load_with("PORT", "abc"), "PORT"), "PORT: expected an integer between 1 and 65535, got \"abc\"");
}

TEST(Config, IcePortRange) {
  Env env = minimal_env();
  env["ICE_PORT_MIN"] = "abc";
  env["ICE_PORT_MAX"] = "20000";
  auto bad_min = load(env);
  EXPECT_EQ(error_for(bad_min, "ICE_PORT_MIN"),
            "ICE_PORT_MIN: expected an integer between 1024 and 65535, got \"abc\"");

  env["ICE_PORT_MIN"] = "30000";
  EXPECT_NE(error_for(load(env), "ICE_PORT_MIN").find("must not exceed ICE_PORT_MAX"), std::string::npos);

  env["ICE_PORT_MIN"] = "1023";
  EXPECT_FALSE(load(env).config);

  env.erase("ICE_PORT_MIN");
  EXPECT_NE(error_for(load(env), "ICE_PORT_MIN").find("required when"), std::string::npos);
  env["ICE_PORT_MIN"] = "20000";
  env.erase("ICE_PORT_MAX");
  EXPECT_NE(error_for(load(env), "ICE_PORT_MAX").find("required when"), std::string::npos);

  env["ICE_PORT_MAX"] = "20000";
  auto single_port = load(env);
  ASSERT_TRUE(single_port.config);
  EXPECT_EQ(single_port.config->ice.port_min, 20000);
  EXPECT_EQ(single_port.config->ice.port_max, 20000);
}

TEST(Config, UrlsAndAddresses) {
  for (const char* value : {"ftp://graph.example.org", "graph.facebook.com/v23.0", "https://", "not a url", "wss://x"})
    EXPECT_NE(error_for(load_with("WHATSAPP_GRAPH_URL", value), "WHATSAPP_GRAPH_URL").find("http"),
              std::string::npos)
        << value;
  for (const char* value : {"ftp://x", "api.openai.com"})
    EXPECT_FALSE(load_with("OPENAI_REALTIME_URL", value).config) << value;
  for (const char* value : {"https://api.openai.com/v1/realtime", "HTTP://127.0.0.1:8081/v1/realtime"})
    EXPECT_TRUE(load_with("OPENAI_REALTIME_URL", value).config) << value;

  for (const char* value : {"198.51.100.7", "::1"}) EXPECT_TRUE(load_with("ICE_PUBLIC_IP", value).config) << value;
  for (const char* value : {"example.org", "300.1.1.1", "1.2.3"})
    EXPECT_NE(error_for(load_with("ICE_PUBLIC_IP", value), "ICE_PUBLIC_IP").find("IPv4 or IPv6"), std::string::npos)
        << value;

  for (const char* value : {"stun.example.org:3478", "turn://stun.example.org:3478", "stun://"})
    EXPECT_NE(error_for(load_with("STUN_SERVER", value), "STUN_SERVER").find("stun://"), std::string::npos) << value;
  for (const char* value : {"turn://turn.example.org:3478", "turn://user@turn.example.org:3478",
                            "stun://user:pass@turn.example.org:3478"}) {
    std::string error = error_for(load_with("TURN_SERVER", value), "TURN_SERVER");
    EXPECT_NE(error.find("turn://user:pass@host:port"), std::string::npos) << value;
  }
  std::string secret_turn = error_for(load_with("TURN_SERVER", "turn://user:hunter2@"), "TURN_SERVER");
  EXPECT_EQ(secret_turn.find("hunter2"), std::string::npos);  // the password is never echoed
}

TEST(Config, AzureAllOrNothing) {
  Env env = minimal_env();
  env.erase("OPENAI_API_KEY");
  env["AZURE_OPENAI_ENDPOINT"] = "wss://example.openai.azure.com/openai/realtime?api-version=2025-08-28";
  auto partial = load(env);
  EXPECT_FALSE(partial.config);
  EXPECT_NE(error_for(partial, "AZURE_OPENAI_API_KEY").find("Azure needs all three"), std::string::npos);
  EXPECT_NE(error_for(partial, "AZURE_OPENAI_DEPLOYMENT").find("Azure needs all three"), std::string::npos);
  EXPECT_EQ(partial.errors.size(), 2u);  // no extra complaint about OPENAI_API_KEY

  env["AZURE_OPENAI_API_KEY"] = "azure-key";
  env["AZURE_OPENAI_DEPLOYMENT"] = "my-realtime";
  auto azure = load(env);
  ASSERT_TRUE(azure.config) << (azure.errors.empty() ? "" : azure.errors[0]);
  EXPECT_TRUE(azure.config->realtime.azure);
  EXPECT_EQ(azure.config->realtime.url, env["AZURE_OPENAI_ENDPOINT"]);
  EXPECT_EQ(azure.config->realtime.api_key, "azure-key");
  EXPECT_EQ(azure.config->realtime.model, "my-realtime");

  env["AZURE_OPENAI_ENDPOINT"] = "example.openai.azure.com";
  EXPECT_FALSE(error_for(load(env), "AZURE_OPENAI_ENDPOINT").empty());
}

TEST(Config, InstructionsFile) {
  g_autofree char* path = nullptr;
  int fd = g_file_open_tmp("vb-instructions-XXXXXX", &path, nullptr);
  ASSERT_GE(fd, 0);
  close(fd);
  ASSERT_TRUE(g_file_set_contents(path, "  You answer for Example GmbH.\n", -1, nullptr));

  auto from_file = load_with("ASSISTANT_INSTRUCTIONS_FILE", path);
  ASSERT_TRUE(from_file.config);
  EXPECT_EQ(from_file.config->realtime.instructions, "You answer for Example GmbH.");

  Env both = minimal_env();
  both["ASSISTANT_INSTRUCTIONS_FILE"] = path;
  both["ASSISTANT_INSTRUCTIONS"] = "inline";
  EXPECT_NE(error_for(load(both), "ASSISTANT_INSTRUCTIONS_FILE").find("only one"), std::string::npos);

  ASSERT_TRUE(g_file_set_contents(path, " \n\t", -1, nullptr));
  EXPECT_NE(error_for(load_with("ASSISTANT_INSTRUCTIONS_FILE", path), "ASSISTANT_INSTRUCTIONS_FILE").find("empty"),
            std::string::npos);

  g_unlink(path);
  EXPECT_NE(error_for(load_with("ASSISTANT_INSTRUCTIONS_FILE", path), "ASSISTANT_INSTRUCTIONS_FILE")
                .find("cannot read"),
            std::string::npos);
}

TEST(Config, AllErrorsAreCollected) {
  Env env = minimal_env();
  env.erase("WHATSAPP_APP_SECRET");
  env["PORT"] = "x";
  env["ICE_PUBLIC_IP"] = "y";
  env["WEBHOOK_MAX_AGE_S"] = "0";
  auto result = load(env);
  EXPECT_FALSE(result.config);
  EXPECT_EQ(result.errors.size(), 4u);
}

TEST(Config, DescribeHidesSecrets) {
  Env env = minimal_env();
  env["TURN_SERVER"] = "turn://user:hunter2@turn.example.org:3478";
  auto result = load(env);
  ASSERT_TRUE(result.config);
  std::string line = result.config->describe();
  for (const char* secret : {"verify", "secret", "access", "sk-test", "hunter2"})
    EXPECT_EQ(line.find(std::string("=") + secret), std::string::npos) << secret << " in " << line;
  EXPECT_EQ(line.find("hunter2"), std::string::npos);
  EXPECT_NE(line.find("app_secret=(set)"), std::string::npos);
  EXPECT_NE(line.find("port=8080"), std::string::npos);
  EXPECT_NE(line.find("phone_number_id=12345"), std::string::npos);
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(Config, DatabaseSettings) {
  auto defaults = load(minimal_env());
  ASSERT_TRUE(defaults.config);
  EXPECT_EQ(defaults.config->database_url, "");
  EXPECT_EQ(defaults.config->database_pool_size, 4);
  EXPECT_EQ(defaults.config->default_time_zone, "");

  Env env = minimal_env();
  env["DATABASE_URL"] = "postgresql://vb:pw@127.0.0.1:5432/voicebridge?sslmode=disable";
  env["DATABASE_POOL_SIZE"] = "64";
  env["DEFAULT_TIME_ZONE"] = "Europe/Berlin";
  auto set = load(env);
  ASSERT_TRUE(set.config) << (set.errors.empty() ? "" : set.errors[0]);
  EXPECT_EQ(set.config->database_url, "postgresql://vb:pw@127.0.0.1:5432/voicebridge?sslmode=disable");
  EXPECT_EQ(set.config->database_pool_size, 64);
  EXPECT_EQ(set.config->default_time_zone, "Europe/Berlin");

  auto key_value = load_with("DATABASE_URL", "host=/run/postgresql dbname=voicebridge");
  ASSERT_TRUE(key_value.config);
  EXPECT_EQ(key_value.config->database_url, "host=/run/postgresql dbname=voicebridge");
}

TEST(Config, BadDatabaseSettingsAreNamed) {
  EXPECT_NE(error_for(load_with("DATABASE_URL", "postgresql://h/db?nonsense_option=1"), "DATABASE_URL").find("libpq"),
            std::string::npos);
  EXPECT_NE(error_for(load_with("DATABASE_URL", "host=x dbname"), "DATABASE_URL").find("libpq"), std::string::npos);
  for (const char* size : {"0", "65", "four"})
    EXPECT_NE(error_for(load_with("DATABASE_POOL_SIZE", size), "DATABASE_POOL_SIZE").find("1 and 64"),
              std::string::npos)
        << size;
  EXPECT_NE(error_for(load_with("DEFAULT_TIME_ZONE", "Mars/Olympus_Mons"), "DEFAULT_TIME_ZONE").find("IANA"),
            std::string::npos);
}

TEST(Config, DescribeHidesTheDatabasePassword) {
  auto result = load_with("DATABASE_URL", "postgresql://vb:hunter2@127.0.0.1/voicebridge");
  ASSERT_TRUE(result.config);
  std::string line = result.config->describe();
  EXPECT_EQ(line.find("hunter2"), std::string::npos);
  EXPECT_NE(line.find("database=(set)"), std::string::npos);
}

TEST(Config, OperationsDefaults) {
  auto result = load(minimal_env());
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->log_format, LogFormat::Text);
  EXPECT_EQ(result.config->drain_timeout_s, 30);
  EXPECT_NE(result.config->describe().find("log_format=text drain_timeout_s=30"), std::string::npos);
}

TEST(Config, OperationsSettings) {
  Env env = minimal_env();
  env["LOG_FORMAT"] = "json";
  env["DRAIN_TIMEOUT_S"] = "3600";
  auto result = load(env);
  ASSERT_TRUE(result.config) << (result.errors.empty() ? "" : result.errors[0]);
  EXPECT_EQ(result.config->log_format, LogFormat::Json);
  EXPECT_EQ(result.config->drain_timeout_s, 3600);
  EXPECT_EQ(load_with("LOG_FORMAT", "text").config->log_format, LogFormat::Text);
  EXPECT_EQ(load_with("DRAIN_TIMEOUT_S", "1").config->drain_timeout_s, 1);
}

TEST(Config, BadOperationsSettingsAreNamed) {
  for (const char* format : {"JSON", "logfmt", " json"}) {
    auto result = load_with("LOG_FORMAT", format);
    EXPECT_FALSE(result.config) << format;
    EXPECT_NE(error_for(result, "LOG_FORMAT").find("expected text or json"), std::string::npos) << format;
  }
  for (const char* timeout : {"0", "3601", "-5", "ten", "30s", "1.5"}) {
    auto result = load_with("DRAIN_TIMEOUT_S", timeout);
    EXPECT_FALSE(result.config) << timeout;
    EXPECT_NE(error_for(result, "DRAIN_TIMEOUT_S").find("between 1 and 3600"), std::string::npos) << timeout;
  }
}

TEST(Config, ReminderDefaults) {
  auto result = load(minimal_env());
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->reminder_tick_s, 15);
  EXPECT_EQ(result.config->reminder_claim_timeout_s, 300);
  EXPECT_EQ(result.config->reminder_max_attempts, 3);
  EXPECT_EQ(result.config->reminder_retry_backoff_s, 300);
  EXPECT_NE(result.config->describe().find("reminder_tick_s=15 reminder_claim_timeout_s=300 reminder_max_attempts=3 "
                                           "reminder_retry_backoff_s=300"),
            std::string::npos);
}

TEST(Config, ReminderSettings) {
  Env env = minimal_env();
  env["REMINDER_TICK_S"] = "1";
  env["REMINDER_CLAIM_TIMEOUT_S"] = "5";
  env["REMINDER_MAX_ATTEMPTS"] = "20";
  env["REMINDER_RETRY_BACKOFF_S"] = "86400";
  auto result = load(env);
  ASSERT_TRUE(result.config) << (result.errors.empty() ? "" : result.errors[0]);
  EXPECT_EQ(result.config->reminder_tick_s, 1);
  EXPECT_EQ(result.config->reminder_claim_timeout_s, 5);
  EXPECT_EQ(result.config->reminder_max_attempts, 20);
  EXPECT_EQ(result.config->reminder_retry_backoff_s, 86400);
}

TEST(Config, BadReminderSettingsAreNamed) {
  const std::map<std::string, std::pair<std::vector<std::string>, std::string>> cases = {
      {"REMINDER_TICK_S", {{"0", "3601", "15s", "-1"}, "between 1 and 3600"}},
      {"REMINDER_CLAIM_TIMEOUT_S", {{"4", "86401", "five"}, "between 5 and 86400"}},
      {"REMINDER_MAX_ATTEMPTS", {{"0", "21", "3.0"}, "between 1 and 20"}},
      {"REMINDER_RETRY_BACKOFF_S", {{"0", "86401", "5m"}, "between 1 and 86400"}},
  };
  for (const auto& [name, bad] : cases)
    for (const auto& value : bad.first) {
      auto result = load_with(name, value);
      EXPECT_FALSE(result.config) << name << "=" << value;
      EXPECT_NE(error_for(result, name).find(bad.second), std::string::npos) << name << "=" << value;
    }
}

}  // namespace
}  // namespace vb
