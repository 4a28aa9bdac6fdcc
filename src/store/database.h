// PostgreSQL access for the server: a bounded pool of libpq connections driven
// asynchronously from the GLib main loop (fd sources, never a blocking call),
// with a bounded wait queue, reconnection with backoff and the schema
// migrations applied on every (re)connection of the pool.
//
// Every callback runs on the default main context. Work still queued or
// running when the Database is destroyed is dropped without a callback.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "glib_util.h"

namespace vb {

struct PGresultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
struct PGconnDeleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
using PGresultPtr = std::unique_ptr<PGresult, PGresultDeleter>;
using PGconnPtr = std::unique_ptr<PGconn, PGconnDeleter>;

// One SQL statement with text parameters ($1, $2, ...; nullopt is NULL).
// A statement without parameters may hold several commands separated by ';'.
struct Statement {
  std::string sql;
  std::vector<std::optional<std::string>> params;
};

class QueryResult {
 public:
  enum class Status {
    Ok,           // the statement ran (and, in a transaction, the commit succeeded)
    Unavailable,  // database down, pool saturated, timed out, connection lost, deadlock: worth retrying later
    Failed,       // the database refused the statement (constraint, syntax, ...); nothing was committed
  };

  static QueryResult unavailable(std::string why);
  static QueryResult failed(std::string why, std::string sqlstate = {});
  // The outcome of one libpq result: Ok for a command or rows, Failed otherwise.
  static QueryResult from(PGresultPtr result);

  Status status() const { return status_; }
  bool ok() const { return status_ == Status::Ok; }
  const std::string& error() const { return error_; }
  const std::string& sqlstate() const { return sqlstate_; }

  int rows() const;
  // The text value of `column` in `row`; nullopt for NULL or an unknown column.
  std::optional<std::string> value(int row, const char* column) const;
  // A bigint column; nullopt for NULL or a value that is not an integer.
  std::optional<int64_t> integer(int row, const char* column) const;
  // Rows inserted/updated/deleted by the statement (PQcmdTuples).
  int64_t affected_rows() const;

 private:
  Status status_ = Status::Ok;
  std::string error_, sqlstate_;
  PGresultPtr result_;
};

struct DatabaseOptions {
  int max_queue = 64;            // queries waiting for a connection; beyond that they fail as unavailable
  int query_timeout_ms = 5000;   // from query() to result, queueing included; then the query is abandoned
  int migration_timeout_ms = 60000;
  int reconnect_min_ms = 250;    // backoff between reconnection attempts: doubles up to reconnect_max_ms
  int reconnect_max_ms = 10000;
};

class Database {
 public:
  using Done = std::function<void(QueryResult)>;
  // A transaction whose statements may depend on earlier results: called with
  // nullptr first, then with each statement's (successful) result; returns the
  // next statement, or nullopt to commit.
  using TransactionStep = std::function<std::optional<Statement>(const QueryResult* previous)>;

  // `conninfo`: a libpq URI or key=value string. A host name is resolved by
  // libpq synchronously: use an IP address or a unix socket directory.
  Database(std::string conninfo, int pool_size, DatabaseOptions options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Connects the pool and applies the migrations, asynchronously; from then on
  // reconnects on its own whenever connections are lost.
  void start();

  // A connection works and the migrations are applied.
  bool healthy() const;

  // Runs one statement in autocommit mode on a pooled connection. When the
  // database is not healthy or the queue is full, `done` gets Unavailable on
  // the next main-loop iteration.
  void query(std::string sql, std::vector<std::optional<std::string>> params, Done done);

  // Runs the statements in one transaction (BEGIN ... COMMIT). The first
  // failure rolls everything back; `done` gets the last statement's result
  // once committed, or the failure.
  void transaction(std::vector<Statement> statements, Done done);
  void transaction(TransactionStep step, Done done);

  // Queries that did not succeed, failed connection attempts and lost
  // connections, since start (for voicebridge_database_errors_total).
  uint64_t errors() const { return errors_; }

  int pool_size() const { return static_cast<int>(slots_.size()); }
  int live_connections() const;

 private:
  class Connection;
  struct Job;
  struct Slot;

  void connect_slot(Slot& slot);
  void on_slot_connected(Slot& slot, bool ok, const std::string& error);
  void on_slot_lost(Slot& slot, const std::string& error);
  void schedule_reconnect(Slot& slot);
  void maybe_migrate();
  void apply_migration(Slot& slot, size_t index);
  void submit(std::unique_ptr<Job> job);
  void arm_deadline(Job& job, int timeout_ms);
  void dispatch();
  void run_job(Slot& slot, std::unique_ptr<Job> job);
  void job_step(Slot& slot, const QueryResult* previous);
  void finish_job(Slot& slot, QueryResult result);
  void on_job_deadline(Job* job);
  void update_health();
  // Calls `done` on the next main-loop iteration, unless this Database is gone
  // by then: callbacks never run inside our own libpq handlers.
  void deliver(Done done, QueryResult result);

  std::string conninfo_;
  DatabaseOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool started_ = false;
  bool migrated_ = false;
  bool migrating_ = false;
  int migration_failures_ = 0;
  ScopedSource migration_retry_;
  bool was_healthy_ = false;
  uint64_t errors_ = 0;
  AliveToken<Database> alive_{this};
};

}  // namespace vb
