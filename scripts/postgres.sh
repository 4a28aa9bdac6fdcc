# PostgreSQL clusters for development and tests, with Debian's server binaries.
# Source it, then:
#   vb_pg_start DATADIR [PORT] [throwaway]
#                        initialises DATADIR if empty (trust auth, user postgres) and starts a server on a unix
#                        socket in DATADIR/socket only (no TCP); "throwaway" turns fsync off for speed
#   vb_pg_url DATADIR [PORT]   prints the libpq URI of that server
#   vb_pg_stop DATADIR         stops it (fast shutdown); no-op when not running
#   vb_pg_start_throwaway      starts a cluster in a new temporary directory; exports DATABASE_URL and VB_PGDATA
#   vb_pg_stop_throwaway       stops that cluster and removes its directory
#   vb_pg_start_project        starts the project's own cluster in .pgdata/ and exports DATABASE_URL
# PostgreSQL refuses to run as root: as root, the server runs as the "postgres" user, which owns DATADIR (every
# directory above DATADIR must be searchable by that user).
# shellcheck shell=bash

VB_PG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The newest installed server version's bin directory.
vb_pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ] || [ ! -x "$dir/pg_ctl" ]; then
    echo "postgres.sh: no PostgreSQL server found in /usr/lib/postgresql (apt-get install postgresql)" >&2
    return 1
  fi
  echo "$dir"
}

# Runs a server binary as the cluster's owner.
vb_pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

vb_pg_url() {
  local datadir=$1 port=${2:-5432}
  echo "postgresql://postgres@/postgres?host=$datadir/socket&port=$port"
}

vb_pg_start() {
  local datadir=${1:?usage: vb_pg_start DATADIR [PORT] [throwaway]} port=${2:-5432} mode=${3:-}
  local bindir
  bindir=$(vb_pg_bindir) || return 1
  mkdir -p "$datadir" || return 1
  datadir=$(cd "$datadir" && pwd)
  [ "$(id -u)" -eq 0 ] && chown postgres: "$datadir"
  chmod 700 "$datadir"
  if [ ! -f "$datadir/PG_VERSION" ]; then
    vb_pg_as_owner "$bindir/initdb" -D "$datadir" -A trust -U postgres -E UTF8 --no-locale --no-sync \
      --no-instructions >"$datadir.initdb.log" 2>&1 || {
      echo "postgres.sh: initdb failed:" >&2
      cat "$datadir.initdb.log" >&2
      return 1
    }
    rm -f "$datadir.initdb.log"
  fi
  vb_pg_as_owner mkdir -p "$datadir/socket" || return 1
  local options="-c listen_addresses='' -c unix_socket_directories='$datadir/socket' -p $port"
  [ "$mode" = throwaway ] && options+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  if vb_pg_as_owner "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
    return 0
  fi
  vb_pg_as_owner "$bindir/pg_ctl" -D "$datadir" -l "$datadir/server.log" -o "$options" -w -t 60 start >/dev/null || {
    echo "postgres.sh: the server did not start; its log:" >&2
    tail -n 20 "$datadir/server.log" >&2
    return 1
  }
}

vb_pg_stop() {
  local datadir=${1:?usage: vb_pg_stop DATADIR} bindir
  bindir=$(vb_pg_bindir) || return 1
  [ -f "$datadir/postmaster.pid" ] || return 0
  vb_pg_as_owner "$bindir/pg_ctl" -D "$datadir" -m fast -w stop >/dev/null
}

vb_pg_start_throwaway() {
  local base
  base=$(mktemp -d /tmp/vb-pg.XXXXXX) || return 1
  chmod 755 "$base"
  VB_PGDATA=$base/data
  vb_pg_start "$VB_PGDATA" 5432 throwaway || { rm -rf "$base"; return 1; }
  DATABASE_URL=$(vb_pg_url "$VB_PGDATA" 5432)
  export VB_PGDATA DATABASE_URL
}

vb_pg_stop_throwaway() {
  [ -n "${VB_PGDATA:-}" ] || return 0
  vb_pg_stop "$VB_PGDATA"
  rm -rf "$(dirname "$VB_PGDATA")"
  unset VB_PGDATA
}

vb_pg_start_project() {
  local datadir=$VB_PG_ROOT/.pgdata
  vb_pg_start "$datadir" 5432 || return 1
  DATABASE_URL=$(vb_pg_url "$datadir" 5432)
  export DATABASE_URL
}
