// The connection pool and the migrations against a real PostgreSQL.
#include <gtest/gtest.h>

#include <optional>

#include "../unit/main_loop.h"
#include "postgres_fixture.h"
#include "store/database.h"
#include "store/migrations.h"

namespace vb {
namespace {

using test::run_until;

// Runs one query to completion on the main loop.
QueryResult run_query(Database& db, const std::string& sql, std::vector<std::optional<std::string>> params = {}) {
  std::optional<QueryResult> result;
  db.query(sql, std::move(params), [&](QueryResult r) { result = std::move(r); });
  run_until([&] { return result.has_value(); });
  return result ? std::move(*result) : QueryResult::failed("no result");
}

QueryResult run_transaction(Database& db, std::vector<Statement> statements) {
  std::optional<QueryResult> result;
  db.transaction(std::move(statements), [&](QueryResult r) { result = std::move(r); });
  run_until([&] { return result.has_value(); });
  return result ? std::move(*result) : QueryResult::failed("no result");
}

class DatabaseTest : public ::testing::Test {
 protected:
  test::TestDatabase database_{test::shared_server_url()};
  test::Sql sql_{database_.conninfo()};
};

TEST_F(DatabaseTest, MigrationsCreateTheSchema) {
  Database db(database_.conninfo(), 2);
  EXPECT_FALSE(db.healthy());
  db.start();
  ASSERT_TRUE(run_until([&] { return db.healthy(); }));
  EXPECT_EQ(sql_.count("schema_migrations"), static_cast<int64_t>(migrations().size()));
  for (const char* table : {"tasks", "reminders", "calls"})
    EXPECT_EQ(sql_.scalar(std::string("SELECT to_regclass('") + table + "') IS NOT NULL"), "t") << table;
  // The scheduler's claim query needs the partial index on pending reminders.
  EXPECT_NE(sql_.scalar("SELECT indexdef FROM pg_indexes WHERE indexname = 'reminders_due_idx'")
                .find("WHERE (status = 'pending'::text)"),
            std::string::npos);
}

TEST_F(DatabaseTest, MigrationsRunTwiceApplyOnce) {
  {
    Database first(database_.conninfo(), 1);
    first.start();
    ASSERT_TRUE(run_until([&] { return first.healthy(); }));
  }
  std::string applied_at = sql_.scalar("SELECT applied_at FROM schema_migrations WHERE version = 1");
  Database second(database_.conninfo(), 1);
  second.start();
  ASSERT_TRUE(run_until([&] { return second.healthy(); }));
  EXPECT_EQ(sql_.count("schema_migrations"), static_cast<int64_t>(migrations().size()));
  EXPECT_EQ(sql_.scalar("SELECT applied_at FROM schema_migrations WHERE version = 1"), applied_at);
}

TEST_F(DatabaseTest, ConcurrentStartsApplyEachMigrationOnce) {
  // Four servers starting together: the advisory lock serialises them and
  // exactly one applies the schema (a second CREATE TABLE would fail).
  std::vector<std::unique_ptr<Database>> servers;
  for (int i = 0; i < 4; ++i) servers.push_back(std::make_unique<Database>(database_.conninfo(), 2));
  for (auto& server : servers) server->start();
  ASSERT_TRUE(run_until([&] {
    return std::all_of(servers.begin(), servers.end(), [](const auto& s) { return s->healthy(); });
  }));
  EXPECT_EQ(sql_.count("schema_migrations"), static_cast<int64_t>(migrations().size()));
  EXPECT_EQ(sql_.count("pg_tables WHERE tablename IN ('tasks', 'reminders', 'calls')"), 3);
}

TEST_F(DatabaseTest, ParametersResultsAndErrors) {
  Database db(database_.conninfo(), 2);
  db.start();
  ASSERT_TRUE(run_until([&] { return db.healthy(); }));

  auto rows = run_query(db, "SELECT $1::text AS a, $2::text AS b, 42::bigint AS n", {"x'; DROP TABLE tasks; --", std::nullopt});
  ASSERT_TRUE(rows.ok()) << rows.error();
  EXPECT_EQ(rows.rows(), 1);
  EXPECT_EQ(rows.value(0, "a"), "x'; DROP TABLE tasks; --");
  EXPECT_EQ(rows.value(0, "b"), std::nullopt);
  EXPECT_EQ(rows.integer(0, "n"), 42);
  EXPECT_EQ(rows.value(0, "missing"), std::nullopt);
  EXPECT_EQ(rows.value(1, "a"), std::nullopt);

  auto violation = run_query(db, "INSERT INTO tasks (phone_number, title) VALUES ('4915112345678', '')");
  EXPECT_EQ(violation.status(), QueryResult::Status::Failed);
  EXPECT_EQ(violation.sqlstate(), "23514");  // check_violation
  EXPECT_EQ(sql_.count("tasks"), 0);

  auto syntax = run_query(db, "SELEKT 1");
  EXPECT_EQ(syntax.status(), QueryResult::Status::Failed);
  EXPECT_EQ(syntax.sqlstate(), "42601");

  auto inserted = run_query(db, "INSERT INTO tasks (phone_number, title) VALUES ($1, $2)", {"4915112345678", "a"});
  ASSERT_TRUE(inserted.ok()) << inserted.error();
  EXPECT_EQ(inserted.affected_rows(), 1);
  EXPECT_TRUE(db.healthy());
}

TEST_F(DatabaseTest, TransactionIsAllOrNothing) {
  Database db(database_.conninfo(), 1);
  db.start();
  ASSERT_TRUE(run_until([&] { return db.healthy(); }));
  const char* insert = "INSERT INTO tasks (phone_number, title) VALUES ($1, $2) RETURNING id";
  auto failed = run_transaction(db, {{insert, {"4915112345678", "first"}}, {insert, {"4915112345678", ""}}});
  EXPECT_EQ(failed.status(), QueryResult::Status::Failed);
  EXPECT_EQ(sql_.count("tasks"), 0);

  auto committed = run_transaction(db, {{insert, {"4915112345678", "first"}}, {insert, {"4915112345678", "second"}}});
  ASSERT_TRUE(committed.ok()) << committed.error();
  EXPECT_EQ(committed.rows(), 1);  // the last statement's rows
  EXPECT_EQ(sql_.count("tasks"), 2);

  // A step transaction sees each result before choosing the next statement.
  std::vector<std::string> seen;
  std::optional<QueryResult> result;
  db.transaction(
      [&seen, step = 0](const QueryResult* previous) mutable -> std::optional<Statement> {
        if (previous)
          seen.push_back(previous->value(0, "v").value_or("?"));
        if (step++ == 3)
          return std::nullopt;
        return Statement{"SELECT $1::int * 2 AS v", {std::to_string(step)}};
      },
      [&](QueryResult r) { result = std::move(r); });
  ASSERT_TRUE(run_until([&] { return result.has_value(); }));
  EXPECT_TRUE(result->ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"2", "4", "6"}));
}

TEST_F(DatabaseTest, TheWaitQueueIsBounded) {
  DatabaseOptions options;
  options.max_queue = 2;
  Database db(database_.conninfo(), 1, options);
  db.start();
  ASSERT_TRUE(run_until([&] { return db.healthy(); }));
  // One query runs, two wait, the fourth is refused at once.
  std::vector<std::optional<QueryResult>> results(4);
  for (auto& slot : results) db.query("SELECT 1 AS one", {}, [&slot](QueryResult r) { slot = std::move(r); });
  ASSERT_TRUE(run_until([&] { return std::all_of(results.begin(), results.end(), [](auto& r) { return r.has_value(); }); }));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(results[i]->ok()) << i << ": " << results[i]->error();
  EXPECT_EQ(results[3]->status(), QueryResult::Status::Unavailable);
  EXPECT_NE(results[3]->error().find("busy"), std::string::npos);
}

TEST_F(DatabaseTest, AStuckQueryIsAbandoned) {
  DatabaseOptions options;
  options.query_timeout_ms = 300;
  options.reconnect_min_ms = 50;
  Database db(database_.conninfo(), 1, options);
  db.start();
  ASSERT_TRUE(run_until([&] { return db.healthy(); }));
  auto stuck = run_query(db, "SELECT pg_sleep(60)");
  EXPECT_EQ(stuck.status(), QueryResult::Status::Unavailable);
  ASSERT_TRUE(run_until([&] { return db.healthy(); }));
  auto after = run_query(db, "SELECT 7 AS n");
  ASSERT_TRUE(after.ok()) << after.error();
  EXPECT_EQ(after.integer(0, "n"), 7);
  // The server ended the abandoned statement's backend soon after: nothing
  // of it lingers. (A 50 ms tick wakes the main loop to look again.)
  guint tick = g_timeout_add(50, [](gpointer) -> gboolean { return G_SOURCE_CONTINUE; }, nullptr);
  EXPECT_TRUE(run_until([&] { return sql_.count("pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'") == 0; }));
  g_source_remove(tick);
}

TEST(DatabaseDown, NoServerMeansUnavailableAtOnce) {
  g_autofree char* missing = g_dir_make_tmp("vb-no-pg.XXXXXX", nullptr);
  Database db(std::string("host=") + missing + " dbname=postgres user=postgres", 2);
  db.start();
  EXPECT_FALSE(db.healthy());
  std::optional<QueryResult> result;
  db.query("SELECT 1", {}, [&](QueryResult r) { result = std::move(r); });
  ASSERT_TRUE(run_until([&] { return result.has_value(); }, 5));
  EXPECT_EQ(result->status(), QueryResult::Status::Unavailable);
  EXPECT_FALSE(db.healthy());
  g_rmdir(missing);
}

TEST(DatabaseDown, CallbacksOfADestroyedDatabaseNeverRun) {
  test::TestDatabase database(test::shared_server_url());
  bool called = false;
  {
    Database db(database.conninfo(), 1);
    db.start();
    ASSERT_TRUE(run_until([&] { return db.healthy(); }));
    db.query("SELECT pg_sleep(0.2)", {}, [&](QueryResult) { called = true; });
    db.query("SELECT 1", {}, [&](QueryResult) { called = true; });
  }
  test::drain_main_context();
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace vb
