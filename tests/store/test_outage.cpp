// The database stopped and started again under a running pool: tools answer
// "unavailable" at once, health reflects the outage, and the pool recovers.
#include <gtest/gtest.h>

#include "tool_fixture.h"

namespace vb {
namespace {

using test::run_tool;
using test::run_until;

constexpr const char* kCaller = "4915112345678";

TEST(Outage, ToolsAnswerUnavailableUntilTheDatabaseIsBack) {
  test::PrivateCluster cluster;  // ours alone: this test stops it
  test::TestDatabase database(cluster.url());
  DatabaseOptions options;
  options.reconnect_min_ms = 50;
  options.reconnect_max_ms = 400;
  Database db(database.conninfo(), 2, options);
  Config config;
  Tools tools(&db, config);
  db.start();
  ASSERT_TRUE(run_until([&] { return db.healthy(); }));
  ASSERT_EQ(run_tool(tools, kCaller, "create_task", R"({"title": "Before the outage"})").error(), "");

  cluster.stop();
  // Before the pool has noticed anything: the query fails on its dead connection.
  auto first = run_tool(tools, kCaller, "create_task", R"({"title": "During the outage"})");
  EXPECT_EQ(first.error(), "unavailable") << first.text();
  ASSERT_TRUE(run_until([&] { return !db.healthy(); }));
  EXPECT_EQ(db.live_connections(), 0);

  // Down and known to be down: every tool answers without waiting for anything.
  for (const char* tool : {"list_tasks", "list_reminders", "create_task"}) {
    auto answer = run_tool(tools, kCaller, tool, tool[0] == 'l' ? "{}" : R"({"title": "x"})");
    EXPECT_EQ(answer.error(), "unavailable") << tool << ": " << answer.text();
  }
  // Bad arguments are still reported as such: the model can fix them meanwhile.
  EXPECT_EQ(run_tool(tools, kCaller, "create_task", "{}").error(), "invalid_arguments");
  std::optional<std::string> summary;
  tools.caller_summary(kCaller, [&](std::string s) { summary = std::move(s); });
  ASSERT_TRUE(run_until([&] { return summary.has_value(); }));
  EXPECT_EQ(*summary, "");
  EXPECT_FALSE(db.healthy());

  cluster.start();
  ASSERT_TRUE(run_until([&] { return db.healthy(); }, 30));
  auto listed = run_tool(tools, kCaller, "list_tasks", "{}");
  ASSERT_EQ(listed.error(), "") << listed.text();
  EXPECT_EQ(test::Answer::integer(listed.object(), "total"), 1);  // nothing from the outage was written
  EXPECT_EQ(run_tool(tools, kCaller, "create_task", R"({"title": "After the outage"})").error(), "");
  ASSERT_TRUE(run_until([&] { return db.live_connections() == db.pool_size(); }));
}

}  // namespace
}  // namespace vb
