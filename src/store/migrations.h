// The database schema as an ordered list of migrations. Each is applied in its
// own transaction under a cluster-wide advisory lock and recorded in
// schema_migrations, so servers starting together apply each exactly once.
#pragma once

#include <memory>
#include <vector>

#include "store/database.h"

namespace vb {

struct Migration {
  int version;       // 1, 2, ... in order; never reuse or edit a released one, add a new one
  const char* name;
  const char* sql;   // several statements, no parameters
};

const std::vector<Migration>& migrations();

// The transaction that applies `migration` unless schema_migrations already
// records it, with a statement timeout of `timeout_ms` (waiting for the lock
// included). Sets *applied when it ran the migration's SQL.
Database::TransactionStep migration_transaction(const Migration& migration, std::shared_ptr<bool> applied,
                                                int timeout_ms);

}  // namespace vb
