#include "store/database.h"

#include <glib-unix.h>
#include <glib.h>

#include <algorithm>
#include <string_view>

#include "store/migrations.h"

namespace vb {
namespace {

// A connection attempt that neither succeeds nor fails within this is given up.
constexpr guint kConnectTimeoutMs = 10000;
// The server-side statement_timeout exceeds the client's deadline by this.
constexpr int kServerTimeoutMarginMs = 1000;

std::string trimmed(const char* message) {
  std::string text = message ? message : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text.empty() ? "unknown error" : text;
}

}  // namespace

// ---------------------------------------------------------------------------
// QueryResult

QueryResult QueryResult::unavailable(std::string why) {
  QueryResult result;
  result.status_ = Status::Unavailable;
  result.error_ = std::move(why);
  return result;
}

QueryResult QueryResult::failed(std::string why, std::string sqlstate) {
  QueryResult result;
  result.status_ = Status::Failed;
  result.error_ = std::move(why);
  result.sqlstate_ = std::move(sqlstate);
  return result;
}

QueryResult QueryResult::from(PGresultPtr pg) {
  ExecStatusType status = PQresultStatus(pg.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
    QueryResult result;
    result.result_ = std::move(pg);
    return result;
  }
  std::string sqlstate = PQresultErrorField(pg.get(), PG_DIAG_SQLSTATE) ?: "";
  // The primary message only: its DETAIL may quote row values (phone numbers)
  // and error() ends up in log lines.
  const char* primary = PQresultErrorField(pg.get(), PG_DIAG_MESSAGE_PRIMARY);
  std::string message = trimmed(primary ? primary : PQresultErrorMessage(pg.get()));
  // Classes that say nothing about the statement: connection exceptions (08),
  // transaction rollbacks such as deadlocks (40), insufficient resources
  // (53), operator intervention such as timeouts and shutdowns (57).
  std::string_view error_class = std::string_view(sqlstate).substr(0, 2);
  if (error_class == "08" || error_class == "40" || error_class == "53" || error_class == "57") {
    QueryResult result = unavailable(std::move(message));
    result.sqlstate_ = std::move(sqlstate);
    return result;
  }
  return failed(std::move(message), std::move(sqlstate));
}

int QueryResult::rows() const { return result_ ? PQntuples(result_.get()) : 0; }

std::optional<std::string> QueryResult::value(int row, const char* column) const {
  if (!result_ || row < 0 || row >= rows())
    return std::nullopt;
  int field = PQfnumber(result_.get(), column);
  if (field < 0 || PQgetisnull(result_.get(), row, field))
    return std::nullopt;
  return std::string(PQgetvalue(result_.get(), row, field),
                     static_cast<size_t>(PQgetlength(result_.get(), row, field)));
}

std::optional<int64_t> QueryResult::integer(int row, const char* column) const {
  auto text = value(row, column);
  gint64 parsed = 0;
  if (!text || !g_ascii_string_to_signed(text->c_str(), 10, G_MININT64, G_MAXINT64, &parsed, nullptr))
    return std::nullopt;
  return parsed;
}

int64_t QueryResult::affected_rows() const {
  if (!result_)
    return 0;
  const char* count = PQcmdTuples(result_.get());
  return count && *count ? g_ascii_strtoll(count, nullptr, 10) : 0;
}

// ---------------------------------------------------------------------------
// Connection: one libpq connection and its fd watch on the main loop. It
// reports through callbacks only; each handler calls at most one callback, as
// its last action.

class Database::Connection {
 public:
  using ConnectedFn = std::function<void(bool ok, const std::string& error)>;
  using LostFn = std::function<void(const std::string& error)>;
  using ResultFn = std::function<void(QueryResult)>;

  explicit Connection(LostFn on_lost) : on_lost_(std::move(on_lost)) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool idle() const { return state_ == State::Idle; }
  bool open() const { return state_ == State::Idle || state_ == State::Busy; }

  void connect(const std::string& conninfo, ConnectedFn done) {
    close();
    const char* keywords[] = {"dbname", "fallback_application_name", nullptr};
    const char* values[] = {conninfo.c_str(), "voicebridge", nullptr};
    conn_.reset(PQconnectStartParams(keywords, values, 1));
    connected_ = std::move(done);
    state_ = State::Connecting;
    if (!conn_ || PQstatus(conn_.get()) == CONNECTION_BAD) {
      fail_connect(conn_ ? trimmed(PQerrorMessage(conn_.get())) : "out of memory");
      return;
    }
    connect_timer_ = run_after(kConnectTimeoutMs, [this] {
      connect_timer_.release();
      fail_connect("no connection within " + std::to_string(kConnectTimeoutMs / 1000) + " s");
    });
    // libpq wants PQconnectPoll called once the socket is writable.
    watch(G_IO_OUT);
  }

  // Sends one statement; `done` gets its result. The connection must be idle.
  void send(const Statement& statement, ResultFn done) {
    g_return_if_fail(state_ == State::Idle);
    int sent = 0;
    if (statement.params.empty()) {
      sent = PQsendQuery(conn_.get(), statement.sql.c_str());
    } else {
      std::vector<const char*> values;
      for (const auto& param : statement.params) values.push_back(param ? param->c_str() : nullptr);
      sent = PQsendQueryParams(conn_.get(), statement.sql.c_str(), static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, 0);
    }
    if (!sent) {
      lose(trimmed(PQerrorMessage(conn_.get())));
      return;
    }
    state_ = State::Busy;
    result_done_ = std::move(done);
    first_error_.reset();
    last_result_.reset();
    flush();
  }

  void close() {
    watch_.reset();
    connect_timer_.reset();
    conn_.reset();
    state_ = State::Closed;
    connected_ = nullptr;
    result_done_ = nullptr;
  }

 private:
  enum class State { Closed, Connecting, Idle, Busy };

  void watch(GIOCondition condition) {
    int fd = PQsocket(conn_.get());
    if (watch_.active() && fd == watched_fd_ && condition == watched_)
      return;
    watch_.reset();
    if (fd < 0)
      return;
    watched_fd_ = fd;
    watched_ = condition;
    auto on_ready = [](gint, GIOCondition, gpointer self) -> gboolean {
      static_cast<Connection*>(self)->on_ready();
      return G_SOURCE_CONTINUE;  // the ScopedSource owns the watch
    };
    watch_ = ScopedSource(g_unix_fd_add_full(G_PRIORITY_DEFAULT, fd,
                                             static_cast<GIOCondition>(condition | G_IO_ERR | G_IO_HUP), on_ready,
                                             this, nullptr));
  }

  void on_ready() {
    switch (state_) {
      case State::Connecting: poll_connect(); return;
      case State::Busy: read_results(); return;
      case State::Idle: read_while_idle(); return;
      case State::Closed: watch_.reset(); return;
    }
  }

  void poll_connect() {
    switch (PQconnectPoll(conn_.get())) {
      case PGRES_POLLING_READING: watch(G_IO_IN); return;
      case PGRES_POLLING_WRITING: watch(G_IO_OUT); return;
      case PGRES_POLLING_OK: {
        if (PQsetnonblocking(conn_.get(), 1) != 0) {
          fail_connect(trimmed(PQerrorMessage(conn_.get())));
          return;
        }
        PQsetNoticeProcessor(
            conn_.get(), [](void*, const char* message) { g_message("database: %s", trimmed(message).c_str()); },
            nullptr);
        connect_timer_.reset();
        state_ = State::Idle;
        watch(G_IO_IN);
        auto done = std::exchange(connected_, nullptr);
        done(true, {});
        return;
      }
      default: fail_connect(trimmed(PQerrorMessage(conn_.get()))); return;
    }
  }

  void fail_connect(const std::string& error) {
    auto done = std::exchange(connected_, nullptr);
    close();
    if (done)
      done(false, error);
  }

  // Sends what libpq still buffers, then waits for the answer.
  void flush() {
    int pending = PQflush(conn_.get());
    if (pending < 0) {
      lose(trimmed(PQerrorMessage(conn_.get())));
      return;
    }
    watch(pending ? static_cast<GIOCondition>(G_IO_IN | G_IO_OUT) : G_IO_IN);
  }

  void read_results() {
    if (!PQconsumeInput(conn_.get())) {
      lose(trimmed(PQerrorMessage(conn_.get())));
      return;
    }
    int unsent = PQflush(conn_.get());
    if (unsent < 0) {
      lose(trimmed(PQerrorMessage(conn_.get())));
      return;
    }
    if (unsent == 0)
      watch(G_IO_IN);
    while (!PQisBusy(conn_.get())) {
      PGresultPtr result(PQgetResult(conn_.get()));
      if (!result) {
        complete();
        return;
      }
      ExecStatusType status = PQresultStatus(result.get());
      bool error = status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY;
      if (error && !first_error_)
        first_error_ = std::move(result);
      else if (!error)
        last_result_ = std::move(result);
    }
    if (PQstatus(conn_.get()) == CONNECTION_BAD)
      lose(trimmed(PQerrorMessage(conn_.get())));
  }

  void complete() {
    if (PQstatus(conn_.get()) == CONNECTION_BAD) {
      lose(trimmed(PQerrorMessage(conn_.get())));
      return;
    }
    state_ = State::Idle;
    auto done = std::exchange(result_done_, nullptr);
    QueryResult result = first_error_   ? QueryResult::from(std::move(first_error_))
                         : last_result_ ? QueryResult::from(std::move(last_result_))
                                        : QueryResult::failed("the statement returned no result");
    done(std::move(result));
  }

  // An idle connection only hears from the server when it goes away (or for
  // notices, which are dropped).
  void read_while_idle() {
    if (!PQconsumeInput(conn_.get()) || PQstatus(conn_.get()) == CONNECTION_BAD) {
      lose(trimmed(PQerrorMessage(conn_.get())));
      return;
    }
    while (PGnotify* notify = PQnotifies(conn_.get())) PQfreemem(notify);
  }

  void lose(const std::string& error) {
    close();
    on_lost_(error);
  }

  LostFn on_lost_;
  PGconnPtr conn_;
  State state_ = State::Closed;
  ScopedSource watch_;
  int watched_fd_ = -1;
  GIOCondition watched_ = G_IO_IN;
  ScopedSource connect_timer_;
  ConnectedFn connected_;
  ResultFn result_done_;
  PGresultPtr first_error_, last_result_;
};

// ---------------------------------------------------------------------------
// Database

struct Database::Job {
  TransactionStep step;
  bool transactional = false;
  Done done;
  ScopedSource deadline;
  std::optional<QueryResult> last;     // the latest statement's result
  std::optional<QueryResult> failure;  // set while rolling back
};

struct Database::Slot {
  int index = 0;
  std::unique_ptr<Connection> conn;
  std::unique_ptr<Job> job;  // the job this connection runs, if any
  int failures = 0;          // consecutive failed connection attempts
  ScopedSource reconnect;

  bool free() const { return conn->idle() && !job; }
};

Database::Database(std::string conninfo, int pool_size, DatabaseOptions options)
    : conninfo_(std::move(conninfo)), options_(options) {
  pool_size = std::clamp(pool_size, 1, 64);
  for (int i = 0; i < pool_size; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->index = i;
    Slot* raw = slot.get();
    slot->conn = std::make_unique<Connection>([this, raw](const std::string& error) { on_slot_lost(*raw, error); });
    slots_.push_back(std::move(slot));
  }
}

// Slots (and their connections, watches and timers) go before the queue; no
// callback can run afterwards.
Database::~Database() { slots_.clear(); }

void Database::start() {
  if (started_)
    return;
  started_ = true;
  for (auto& slot : slots_) connect_slot(*slot);
}

bool Database::healthy() const { return migrated_ && live_connections() > 0; }

int Database::live_connections() const {
  return static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](const auto& slot) { return slot->conn->open(); }));
}

void Database::connect_slot(Slot& slot) {
  slot.reconnect.reset();
  slot.conn->connect(conninfo_, [this, &slot](bool ok, const std::string& error) {
    on_slot_connected(slot, ok, error);
  });
}

void Database::on_slot_connected(Slot& slot, bool ok, const std::string& error) {
  if (!ok) {
    ++errors_;
    // The first failure, then one line in twenty while the outage lasts.
    if (slot.failures % 20 == 0)
      g_warning("database: connection %d failed (attempt %d): %s", slot.index, slot.failures + 1, error.c_str());
    schedule_reconnect(slot);
    return;
  }
  // The server gives up on a statement soon after we do, so an abandoned one
  // holds no locks for long; migrations set their own limit.
  std::string setup = "SET statement_timeout = " + std::to_string(options_.query_timeout_ms + kServerTimeoutMarginMs);
  slot.conn->send({setup, {}}, [this, &slot](QueryResult result) {
    if (!result.ok()) {
      g_warning("database: connection %d setup failed: %s", slot.index, result.error().c_str());
      slot.conn->close();
      schedule_reconnect(slot);
      return;
    }
    if (slot.failures > 0)
      g_message("database: connection %d re-established", slot.index);
    slot.failures = 0;
    maybe_migrate();
    dispatch();
  });
}

void Database::on_slot_lost(Slot& slot, const std::string& error) {
  ++errors_;
  g_warning("database: connection %d lost: %s", slot.index, error.c_str());
  auto job = std::move(slot.job);
  schedule_reconnect(slot);
  if (job)
    deliver(std::move(job->done), QueryResult::unavailable("database connection lost: " + error));
  update_health();
}

void Database::schedule_reconnect(Slot& slot) {
  int shift = std::min(slot.failures, 16);
  int64_t delay = std::min<int64_t>(static_cast<int64_t>(options_.reconnect_min_ms) << shift,
                                    options_.reconnect_max_ms);
  delay = g_random_int_range(static_cast<gint32>(delay / 2), static_cast<gint32>(delay) + 1);  // spread the herd
  ++slot.failures;
  slot.reconnect = run_after(static_cast<guint>(delay), [this, &slot] {
    slot.reconnect.release();
    connect_slot(slot);
  });
  update_health();
}

// The pool takes no work until the schema is known to be current: after the
// start and after every outage that closed all connections.
void Database::maybe_migrate() {
  if (migrated_ || migrating_ || migration_retry_.active())
    return;
  auto slot = std::find_if(slots_.begin(), slots_.end(), [](const auto& s) { return s->free(); });
  if (slot == slots_.end())
    return;
  migrating_ = true;
  apply_migration(**slot, 0);
}

void Database::apply_migration(Slot& slot, size_t index) {
  if (index == migrations().size()) {
    migrating_ = false;
    migrated_ = true;
    migration_failures_ = 0;
    update_health();
    dispatch();
    return;
  }
  const Migration& migration = migrations()[index];
  auto applied = std::make_shared<bool>(false);
  auto job = std::make_unique<Job>();
  job->step = migration_transaction(migration, applied, options_.migration_timeout_ms);
  job->transactional = true;
  job->done = [this, &slot, index, applied, version = migration.version, name = migration.name](QueryResult result) {
    if (!result.ok()) {
      g_warning("database: migration %d (%s) failed: %s", version, name, result.error().c_str());
      migrating_ = false;
      int delay = std::min(options_.reconnect_min_ms << std::min(migration_failures_++, 16), options_.reconnect_max_ms);
      migration_retry_ = run_after(static_cast<guint>(delay), [this] {
        migration_retry_.release();
        maybe_migrate();
      });
      return;
    }
    if (*applied)
      g_message("database: migration %d (%s) applied", version, name);
    if (!slot.free()) {  // the connection went away between two migrations
      migrating_ = false;
      maybe_migrate();
      return;
    }
    apply_migration(slot, index + 1);
  };
  arm_deadline(*job, options_.migration_timeout_ms);
  run_job(slot, std::move(job));
}

void Database::query(std::string sql, std::vector<std::optional<std::string>> params, Done done) {
  auto job = std::make_unique<Job>();
  job->step = [statement = Statement{std::move(sql), std::move(params)}, sent = false](
                  const QueryResult*) mutable -> std::optional<Statement> {
    if (std::exchange(sent, true))
      return std::nullopt;
    return statement;
  };
  job->done = std::move(done);
  submit(std::move(job));
}

void Database::transaction(std::vector<Statement> statements, Done done) {
  transaction(
      [statements = std::move(statements), next = size_t{0}](const QueryResult*) mutable -> std::optional<Statement> {
        if (next == statements.size())
          return std::nullopt;
        return statements[next++];
      },
      std::move(done));
}

void Database::transaction(TransactionStep step, Done done) {
  auto job = std::make_unique<Job>();
  job->step = std::move(step);
  job->transactional = true;
  job->done = std::move(done);
  submit(std::move(job));
}

void Database::submit(std::unique_ptr<Job> job) {
  if (!healthy()) {
    deliver(std::move(job->done), QueryResult::unavailable("the database is unavailable"));
    return;
  }
  bool has_free_slot = std::any_of(slots_.begin(), slots_.end(), [](const auto& slot) { return slot->free(); });
  if (!has_free_slot && static_cast<int>(queue_.size()) >= options_.max_queue) {
    g_warning("database: %zu queries waiting, refusing more", queue_.size());
    deliver(std::move(job->done), QueryResult::unavailable("the database is busy"));
    return;
  }
  arm_deadline(*job, options_.query_timeout_ms);
  queue_.push_back(std::move(job));
  dispatch();
}

void Database::arm_deadline(Job& job, int timeout_ms) {
  job.deadline = run_after(static_cast<guint>(timeout_ms), [this, raw = &job] {
    raw->deadline.release();
    on_job_deadline(raw);
  });
}

void Database::dispatch() {
  if (!migrated_)
    return;
  for (auto& slot : slots_) {
    if (queue_.empty())
      return;
    if (!slot->free())
      continue;
    auto job = std::move(queue_.front());
    queue_.pop_front();
    run_job(*slot, std::move(job));
  }
}

void Database::run_job(Slot& slot, std::unique_ptr<Job> job) {
  slot.job = std::move(job);
  if (!slot.job->transactional) {
    job_step(slot, nullptr);
    return;
  }
  slot.conn->send({"BEGIN", {}}, [this, &slot](QueryResult result) {
    if (!result.ok()) {
      finish_job(slot, std::move(result));
      return;
    }
    job_step(slot, nullptr);
  });
}

// Sends the job's next statement, or ends the job (COMMIT in a transaction).
void Database::job_step(Slot& slot, const QueryResult* previous) {
  Job& job = *slot.job;
  std::optional<Statement> next = job.step(previous);
  if (next) {
    slot.conn->send(*next, [this, &slot](QueryResult result) {
      Job& job = *slot.job;
      if (!result.ok()) {
        if (!job.transactional) {
          finish_job(slot, std::move(result));
          return;
        }
        job.failure = std::move(result);
        slot.conn->send({"ROLLBACK", {}}, [this, &slot](QueryResult) {
          finish_job(slot, std::move(*slot.job->failure));
        });
        return;
      }
      job.last = std::move(result);
      job_step(slot, &*job.last);
    });
    return;
  }
  if (!job.transactional) {
    finish_job(slot, job.last ? std::move(*job.last) : QueryResult::failed("no statement to run"));
    return;
  }
  slot.conn->send({"COMMIT", {}}, [this, &slot](QueryResult result) {
    Job& job = *slot.job;
    if (!result.ok()) {
      finish_job(slot, std::move(result));
      return;
    }
    finish_job(slot, job.last ? std::move(*job.last) : std::move(result));
  });
}

void Database::finish_job(Slot& slot, QueryResult result) {
  auto job = std::move(slot.job);
  deliver(std::move(job->done), std::move(result));
  dispatch();
}

void Database::on_job_deadline(Job* job) {
  auto queued = std::find_if(queue_.begin(), queue_.end(), [job](const auto& q) { return q.get() == job; });
  if (queued != queue_.end()) {
    auto owned = std::move(*queued);
    queue_.erase(queued);
    g_warning("database: a query waited too long for a connection");
    deliver(std::move(owned->done), QueryResult::unavailable("no database connection became free in time"));
    return;
  }
  for (auto& slot : slots_) {
    if (slot->job.get() != job)
      continue;
    // Closing the connection is the only non-blocking way to abandon a
    // statement (PQcancel blocks); the server rolls back what was not committed.
    g_warning("database: connection %d did not answer in time, reconnecting", slot->index);
    auto owned = std::move(slot->job);
    slot->conn->close();
    slot->failures = 0;
    schedule_reconnect(*slot);
    deliver(std::move(owned->done), QueryResult::unavailable("the database did not answer in time"));
    return;
  }
}

void Database::update_health() {
  if (live_connections() == 0 && !migrating_)
    migrated_ = false;  // check the schema again once the database is back
  bool now_healthy = healthy();
  if (now_healthy != was_healthy_) {
    was_healthy_ = now_healthy;
    if (now_healthy)
      g_message("database: ready (%d of %d connections)", live_connections(), pool_size());
    else
      g_warning("database: unavailable; tools answer \"unavailable\" until it is back");
  }
  if (!now_healthy) {
    // Nothing queued may wait for a database that is gone.
    auto queued = std::move(queue_);
    queue_.clear();
    for (auto& job : queued) deliver(std::move(job->done), QueryResult::unavailable("the database is unavailable"));
  }
}

void Database::deliver(Done done, QueryResult result) {
  if (!result.ok())
    ++errors_;
  auto shared = std::make_shared<QueryResult>(std::move(result));
  run_soon([alive = alive_.weak(), done = std::move(done), shared] {
    if (alive.lock())
      done(std::move(*shared));
  });
}

}  // namespace vb
