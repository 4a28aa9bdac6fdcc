// Validation of the arguments the model passes to a tool. Each getter records
// the first problem and returns nullopt; the handler then answers with
// error() instead of touching the database.
#pragma once

#include <json-glib/json-glib.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace vb {

class Arguments {
 public:
  // `json` is the function call's arguments string ("" counts as {}).
  explicit Arguments(const std::string& json);
  ~Arguments();
  Arguments(const Arguments&) = delete;
  Arguments& operator=(const Arguments&) = delete;

  // Refuses members not in `allowed`; a phone-number-like member gets an
  // error of its own (tools act only for the caller of the call).
  void allow_only(std::initializer_list<const char*> allowed);

  // A string of 1..max_chars characters after trimming white space.
  std::optional<std::string> text(const char* name, bool required, size_t max_chars);
  // A positive JSON integer naming a row.
  std::optional<int64_t> id(const char* name);
  // An integer in [min, max]; `fallback` when absent.
  std::optional<int64_t> integer(const char* name, int64_t min, int64_t max, int64_t fallback);
  // One of `choices`; `fallback` when absent.
  std::optional<std::string> choice(const char* name, std::initializer_list<const char*> choices,
                                    const char* fallback);
  // An ISO 8601 date-time with a UTC offset, later than `now_unix` and at most
  // ten years after it; as Unix seconds.
  std::optional<int64_t> future_time(const char* name, bool required, int64_t now_unix);

  bool failed() const { return !error_.empty(); }
  // Why (the first problem found), addressed to the model.
  const std::string& error() const { return error_; }
  // The error code for error(): "invalid_arguments" or "not_allowed".
  const char* error_code() const { return not_allowed_ ? "not_allowed" : "invalid_arguments"; }

 private:
  // The member `name`, or nullptr when absent or JSON null (and not failed).
  JsonNode* member(const char* name, bool required);
  void fail(std::string why);

  JsonParser* parser_ = nullptr;
  JsonObject* object_ = nullptr;
  std::string error_;
  bool not_allowed_ = false;
};

}  // namespace vb
