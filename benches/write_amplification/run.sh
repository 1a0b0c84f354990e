#!/usr/bin/env bash
# WAL written by the demo writer's mix with and without the trigger pipeline (`pgroar triggers`
# for docs/examples/image-feed.toml), on
# a throwaway cluster: the write amplification pgroar removes. Prints bytes per transaction.
#   cargo build --release --bin pgroar && benches/write_amplification/run.sh [seconds] [rows]
# Needs the PostgreSQL server binaries (./dev installs them); runs as the postgres OS user when
# started as root. Page images are measured on and off (full_page_writes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
secs=${1:-20}
rows=${2:-200000}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pgroar=$PWD/target/release/pgroar
dir=$(mktemp -d /tmp/pgroar-wa-XXXX)
port=$((20000 + RANDOM % 20000))
as_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$*"; else bash -c "$*"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$dir"
trap 'as_pg "$bin/pg_ctl -D $dir/data -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
as_pg "$bin/initdb -D $dir/data -A trust -U postgres" >/dev/null
as_pg "$bin/pg_ctl -D $dir/data -o '-p $port -k $dir -c wal_level=logical -c fsync=off' -l $dir/log start" >/dev/null
sql() { as_pg "$bin/psql -h $dir -p $port -U postgres -d ${2:-postgres} -Atc \"$1\""; }
url() { echo "postgresql://postgres@127.0.0.1:$port/$1"; }
for db in plain triggers; do
  sql "CREATE DATABASE $db" >/dev/null
  "$pgroar" generate --url "$(url $db)" --rows "$rows" --publication "" 2>/dev/null
done
"$pgroar" triggers --config docs/examples/image-feed.toml > "$dir/triggers.sql"
[ "$(id -u)" -eq 0 ] && chown postgres "$dir/triggers.sql"
as_pg "$bin/psql -h $dir -p $port -U postgres -d triggers -q -v ON_ERROR_STOP=1 -f $dir/triggers.sql"
for fpw in on off; do
  sql "ALTER SYSTEM SET full_page_writes = $fpw" >/dev/null; sql "SELECT pg_reload_conf()" >/dev/null
  for db in plain triggers; do
    sql "CHECKPOINT" >/dev/null
    a=$(sql "SELECT pg_current_wal_lsn()")
    out=$(timeout -s INT "$secs" "$pgroar" generate --url "$(url $db)" --no-load --write-rate 200 --seed 5 2>&1 | tail -1 || true)
    b=$(sql "SELECT pg_current_wal_lsn()")
    n=$(echo "$out" | sed -E 's/wrote ([0-9]+) transactions.*/\1/')
    bytes=$(sql "SELECT pg_wal_lsn_diff('$b', '$a')")
    echo "full_page_writes=$fpw $db: $n transactions, $bytes WAL bytes, $((bytes / n)) bytes per transaction"
  done
done
