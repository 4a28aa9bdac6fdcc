#include "store/migrations.h"

#include <string>

namespace vb {
namespace {

// pg_advisory_xact_lock key shared by every voicebridge server ("vbschema").
constexpr const char* kMigrationLockKey = "8529986434476631405";

// Phone numbers are stored as the digits WhatsApp sends as wa_id (no '+').
// A call may come from a user known only by a username: its number is ''.
constexpr const char* kInitialSchema = R"SQL(
CREATE TABLE tasks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  phone_number text NOT NULL CHECK (phone_number ~ '^[0-9]{4,20}$'),
  title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  notes text CHECK (char_length(notes) BETWEEN 1 AND 2000),
  due_at timestamptz,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_caller_idx ON tasks (phone_number, status, due_at);

CREATE TABLE reminders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  phone_number text NOT NULL CHECK (phone_number ~ '^[0-9]{4,20}$'),
  text text NOT NULL CHECK (char_length(text) BETWEEN 1 AND 500),
  remind_at timestamptz NOT NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'calling', 'delivered', 'missed', 'cancelled', 'failed')),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  last_error text CHECK (char_length(last_error) <= 2000),
  call_id text CHECK (char_length(call_id) BETWEEN 1 AND 256),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- The reminder scheduler claims due rows with FOR UPDATE SKIP LOCKED.
CREATE INDEX reminders_due_idx ON reminders (remind_at) WHERE status = 'pending';
CREATE INDEX reminders_caller_idx ON reminders (phone_number, status, remind_at);

CREATE TABLE calls (
  call_id text PRIMARY KEY CHECK (char_length(call_id) BETWEEN 1 AND 256),
  direction text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  phone_number text NOT NULL CHECK (phone_number ~ '^[0-9]{0,20}$'),
  started_at timestamptz NOT NULL,
  answered_at timestamptz CHECK (answered_at >= started_at),
  ended_at timestamptz CHECK (ended_at >= started_at),
  end_reason text CHECK (char_length(end_reason) <= 200),
  transcript jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(transcript) = 'array'),
  input_tokens bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
  output_tokens bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_caller_idx ON calls (phone_number, started_at DESC);
)SQL";

// The reminder scheduler: a claim names the server process holding it (so a
// dead process's claim can be taken over after a timeout), and retries or
// Meta's daily limit move the next attempt without touching the time the
// caller asked for.
constexpr const char* kReminderClaims = R"SQL(
ALTER TABLE reminders
  ADD COLUMN claimed_by text CHECK (char_length(claimed_by) BETWEEN 1 AND 200),
  ADD COLUMN claimed_at timestamptz,
  ADD COLUMN next_attempt_at timestamptz;
CREATE INDEX reminders_next_due_idx ON reminders ((coalesce(next_attempt_at, remind_at))) WHERE status = 'pending';
CREATE INDEX reminders_claims_idx ON reminders (claimed_at) WHERE status = 'calling';
)SQL";

}  // namespace

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> list = {
      {1, "tasks, reminders and calls", kInitialSchema},
      {2, "reminder claims and retries", kReminderClaims},
  };
  return list;
}

Database::TransactionStep migration_transaction(const Migration& migration, std::shared_ptr<bool> applied,
                                                int timeout_ms) {
  enum class Next { Timeout, Lock, Table, Check, Apply, Record, Commit };
  auto next = std::make_shared<Next>(Next::Timeout);
  return [migration, applied, next, timeout_ms](const QueryResult* previous) -> std::optional<Statement> {
    switch (*next) {
      case Next::Timeout:
        *next = Next::Lock;
        return Statement{"SET LOCAL statement_timeout = " + std::to_string(timeout_ms), {}};
      case Next::Lock:
        *next = Next::Table;
        return Statement{std::string("SELECT pg_advisory_xact_lock(") + kMigrationLockKey + ")", {}};
      case Next::Table:
        *next = Next::Check;
        // Quietly: the NOTICE for an existing table is noise in every log.
        return Statement{
            "SET LOCAL client_min_messages = warning; CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
            {}};
      case Next::Check:
        *next = Next::Apply;
        return Statement{"SELECT version FROM schema_migrations WHERE version = $1::integer",
                         {std::to_string(migration.version)}};
      case Next::Apply:
        if (previous->rows() > 0)
          return std::nullopt;  // another server (or an earlier start) applied it
        *next = Next::Record;
        return Statement{migration.sql, {}};
      case Next::Record:
        *next = Next::Commit;
        *applied = true;
        return Statement{"INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2)",
                         {std::to_string(migration.version), std::string(migration.name)}};
      case Next::Commit:
        return std::nullopt;
    }
    return std::nullopt;
  };
}

}  // namespace vb
