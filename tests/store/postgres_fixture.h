// Test helpers for the store suites: a real PostgreSQL server, a fresh
// database per test, and blocking SQL to check what the code under test did.
//
// The server is DATABASE_URL's when set (scripts/test starts one), otherwise a
// throwaway cluster started here through scripts/postgres.sh. Tests that stop
// the server always get a private cluster.
#pragma once

#include <glib.h>
#include <glib/gstdio.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <unistd.h>

#include <memory>
#include <string>

#include "store/database.h"

namespace vb::test {

// Runs `script` with scripts/postgres.sh sourced; returns its stdout (trimmed).
inline std::string postgres_sh(const std::string& script) {
  const char* source_root = g_getenv("VOICEBRIDGE_SOURCE_ROOT");
  std::string library = std::string(source_root ? source_root : ".") + "/scripts/postgres.sh";
  std::string command = ". '" + library + "' && " + script;
  const char* argv[] = {"bash", "-c", command.c_str(), nullptr};
  g_autofree char* out = nullptr;
  g_autofree char* err = nullptr;
  int status = 0;
  g_autoptr(GError) error = nullptr;
  bool ran = g_spawn_sync(nullptr, const_cast<char**>(argv), nullptr, G_SPAWN_SEARCH_PATH, nullptr, nullptr, &out,
                          &err, &status, &error);
  if (!ran || !g_spawn_check_wait_status(status, nullptr)) {
    ADD_FAILURE() << "postgres.sh: " << script << ": " << (error ? error->message : "") << (err ? err : "");
    return {};
  }
  return g_strstrip(out);
}

// A cluster of our own in a temporary directory, stopped and removed at the end.
class PrivateCluster {
 public:
  PrivateCluster() {
    g_autofree char* base = g_dir_make_tmp("vb-pg-test.XXXXXX", nullptr);
    base_ = base ? base : "";
    g_chmod(base_.c_str(), 0755);
    datadir_ = base_ + "/data";
    start();
    url_ = postgres_sh("vb_pg_url '" + datadir_ + "'");
  }
  ~PrivateCluster() {
    stop();
    postgres_sh("rm -rf '" + base_ + "'");
  }
  PrivateCluster(const PrivateCluster&) = delete;
  PrivateCluster& operator=(const PrivateCluster&) = delete;

  void start() { postgres_sh("vb_pg_start '" + datadir_ + "' 5432 throwaway"); }
  void stop() { postgres_sh("vb_pg_stop '" + datadir_ + "'"); }
  const std::string& url() const { return url_; }

 private:
  std::string base_, datadir_, url_;
};

// The server every test of this program shares.
inline const std::string& shared_server_url() {
  static std::unique_ptr<PrivateCluster> own;
  static std::string url = [] {
    const char* env = g_getenv("DATABASE_URL");
    if (env && *env)
      return std::string(env);
    own = std::make_unique<PrivateCluster>();
    return own->url();
  }();
  return url;
}

// `conninfo` with its database name replaced, as a key=value string.
inline std::string with_database(const std::string& conninfo, const std::string& dbname) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (!options) {
    ADD_FAILURE() << "bad conninfo: " << (error ? error : "");
    PQfreemem(error);
    return {};
  }
  std::string result;
  for (PQconninfoOption* option = options; option->keyword; ++option) {
    std::string keyword = option->keyword;
    const char* value = keyword == "dbname" ? dbname.c_str() : option->val;
    if (!value)
      continue;
    std::string quoted;
    for (const char* c = value; *c; ++c) {
      if (*c == '\'' || *c == '\\')
        quoted += '\\';
      quoted += *c;
    }
    result += keyword + "='" + quoted + "' ";
  }
  PQconninfoFree(options);
  return result;
}

// Blocking libpq, for setting up and checking (never in the code under test).
class Sql {
 public:
  explicit Sql(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    EXPECT_EQ(PQstatus(conn_.get()), CONNECTION_OK) << PQerrorMessage(conn_.get());
  }
  PGresultPtr exec(const std::string& sql) {
    PGresultPtr result(PQexec(conn_.get(), sql.c_str()));
    ExecStatusType status = PQresultStatus(result.get());
    EXPECT_TRUE(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        << sql << ": " << PQresultErrorMessage(result.get());
    return result;
  }
  // The first column of the first row, "" for none or NULL.
  std::string scalar(const std::string& sql) {
    auto result = exec(sql);
    if (PQntuples(result.get()) < 1 || PQgetisnull(result.get(), 0, 0))
      return {};
    return PQgetvalue(result.get(), 0, 0);
  }
  int64_t count(const std::string& from_where) {
    return g_ascii_strtoll(scalar("SELECT count(*) FROM " + from_where).c_str(), nullptr, 10);
  }

 private:
  PGconnPtr conn_;
};

// A new, empty database on `server_url`, dropped at the end.
class TestDatabase {
 public:
  explicit TestDatabase(const std::string& server_url) : server_url_(server_url) {
    static int counter = 0;
    name_ = "vbtest_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
    Sql(server_url_).exec("CREATE DATABASE " + name_);
    conninfo_ = with_database(server_url_, name_);
  }
  ~TestDatabase() {
    PGconnPtr conn(PQconnectdb(server_url_.c_str()));
    if (PQstatus(conn.get()) == CONNECTION_OK)
      PGresultPtr(PQexec(conn.get(), ("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)").c_str()));
  }
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  const std::string& conninfo() const { return conninfo_; }

 private:
  std::string server_url_, name_, conninfo_;
};

}  // namespace vb::test
