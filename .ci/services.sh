#!/usr/bin/env bash
# Private PostgreSQL and Redis instances for tests, on 127.0.0.1 only, in temp
# dirs, on private ports. Sourced by .ci/run; usable by hand:
#   source .ci/services.sh && pg_start /tmp/pg 55432 && export AGENTPLANE_TEST_DATABASE_URL=...
# PostgreSQL refuses to run as root, so the cluster is owned by 'postgres'.

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  return 1
}

# pg_start DIR PORT: init (if needed) and start a cluster; prints nothing on success.
pg_start() {
  local dir=$1 port=$2 bin
  bin=$(pg_bin) || { echo "PostgreSQL server binaries not found" >&2; return 1; }
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  local run=()
  [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; return 1; }
  fi
  # fsync stays on (the default): benchmarks must reflect durable commits.
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300" start >/dev/null ||
    { cat "$dir/server.log" >&2; return 1; }
}

# pg_stop DIR: fast shutdown (no-op when not running).
pg_stop() {
  local dir=$1 bin
  bin=$(pg_bin) || return 0
  [ -f "$dir/data/postmaster.pid" ] || return 0
  local run=()
  [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

# pg_url PORT [DB]
pg_url() { echo "postgres://postgres@127.0.0.1:$1/${2:-postgres}?sslmode=disable"; }

# redis_start DIR PORT: a private Redis on 127.0.0.1 without persistence.
redis_start() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" || return 1
  local i
  for i in $(seq 1 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$dir/redis.log" >&2
  return 1
}

# redis_stop DIR: stop it (no-op when not running).
redis_stop() {
  local dir=$1
  [ -f "$dir/redis.pid" ] || return 0
  kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
  rm -f "$dir/redis.pid"
}
