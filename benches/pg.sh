#!/usr/bin/env bash
# Side by side on one pgbench database (accounts.filler holding md5 text, as in compare.sh):
#   backup:  cairn pg backup --jobs J | pg_dump | cairn backup --stdin | pg_dump | restic backup --stdin
#            | pg_dump -Fd -j J to disk
#   hourly:  the same backups again after `pgbench -t 2000 -c 2` (bytes added per run)
#   restore: cairn pg restore --jobs J | psql < plain dump | pg_restore -j J | cairn pg restore --table
#            pgbench_branches (one small table)
# Each step prints wall seconds and CPU seconds (user + system of cairn/restic/pg_dump/psql, not of
# the server). A throwaway cluster on its own port and socket folder under WORKDIR; removed at the end.
#
# Each restored database is dropped once measured; `cairn pg drill --scratch-cluster` is measured too.
#
# usage: benches/pg.sh [--scale N] [--jobs J] [WORKDIR]     (defaults: 150, 2, /var/tmp/cairn-pg-bench)
# environment: CAIRN (default target/release/cairn), PG_BIN (default: newest /usr/lib/postgresql/*/bin)
set -euo pipefail
scale=150 jobs=2
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) break ;;
  esac
done
work=${1:-/var/tmp/cairn-pg-bench}
here=$(cd "$(dirname "$0")/.." && pwd)
cairn=${CAIRN:-$here/target/release/cairn}
pgbin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-bench} RESTIC_PASSWORD=${RESTIC_PASSWORD:-bench}
port=$((20000 + RANDOM % 20000))
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
owner=(); [ "$(id -u)" = 0 ] && owner=(runuser -u postgres --)

rm -rf "$work"; mkdir -p "$work"; chmod 755 "$work"
mkdir "$work/pg"; [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
"${owner[@]}" "$pgbin/initdb" -D "$work/pg/data" -A trust -U postgres --no-sync >/dev/null
"${owner[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -w -l "$work/pg/log" \
  -o "-k $work/pg -p $port -c listen_addresses=127.0.0.1 -c max_wal_size=4GB" start >/dev/null
# Everything under WORKDIR goes at the end (tens of GB at scale 150) unless KEEP=1.
trap '"${owner[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true; [ "${KEEP:-}" = 1 ] || rm -rf "$work"' EXIT
url="postgresql://postgres@127.0.0.1:$port"

measure() { # LABEL CMD...: prints "LABEL  wall  cpu"
  local label=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" \
    || { echo "$label failed:"; cat "$work/stderr.txt"; return 1; }
  awk -v l="$label" '{ printf "%-44s %8.2f s wall %8.2f CPU-s\n", l, $1, $2 + $3 }' "$work/time.txt"
}

"$pgbin/createdb" src
"$pgbin/pgbench" -i -s "$scale" -q src >/dev/null 2>&1
"$pgbin/psql" -q -d src -c "UPDATE pgbench_accounts SET filler = md5(aid::text) || md5((aid + 1)::text)" -c "VACUUM FULL pgbench_accounts"
echo "pgbench scale $scale, database $("$pgbin/psql" -Atc "SELECT pg_size_pretty(pg_database_size('src'))" src), jobs $jobs; load: $(cut -d' ' -f1-3 /proc/loadavg)"

for r in pg stdin; do CAIRN_REPOSITORY="$work/repo-$r" "$cairn" init >/dev/null; done
restic init -q -r "$work/repo-restic" >/dev/null
round() {
  measure "cairn pg backup --jobs $jobs" env CAIRN_REPOSITORY="$work/repo-pg" CAIRN_CACHE_DIR="$work/cache-pg" "$cairn" -q pg backup --db "$url/src" --jobs "$jobs"
  measure "pg_dump | cairn backup --stdin" sh -c "pg_dump src | CAIRN_REPOSITORY='$work/repo-stdin' CAIRN_CACHE_DIR='$work/cache-stdin' '$cairn' -q backup --stdin --stdin-filename src.sql"
  measure "pg_dump | restic backup --stdin" sh -c "pg_dump src | restic -q -r '$work/repo-restic' backup --stdin --stdin-filename src.sql"
  rm -rf "$work/dir.dump"
  measure "pg_dump -Fd -j $jobs (to disk)" pg_dump -Fd -j "$jobs" -f "$work/dir.dump" src
  for r in pg stdin restic; do printf '  repository %-7s %s\n' "$r" "$(du -sb "$work/repo-$r" | cut -f1)"; done
}
echo "== first backup"; round
"$pgbin/pgbench" -n -t 2000 -c 2 src >/dev/null 2>&1
echo "== hourly backup after 4000 pgbench transactions"; round

echo "== restore; load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$pgbin/createdb" r_cairn
measure "cairn pg restore --jobs $jobs" env CAIRN_REPOSITORY="$work/repo-pg" CAIRN_CACHE_DIR="$work/cache-pg" "$cairn" -q pg restore latest --db "$url/r_cairn" --jobs "$jobs"
"$pgbin/dropdb" r_cairn
"$pgbin/createdb" r_table
measure "cairn pg restore --table pgbench_branches" env CAIRN_REPOSITORY="$work/repo-pg" CAIRN_CACHE_DIR="$work/cache-pg" "$cairn" -q pg restore latest --db "$url/r_table" --table pgbench_branches
"$pgbin/dropdb" r_table
pg_dump src > "$work/plain.sql"
"$pgbin/createdb" r_psql
measure "psql < plain dump" sh -c "psql -q -d r_psql < '$work/plain.sql'"
"$pgbin/dropdb" r_psql; rm -f "$work/plain.sql"
"$pgbin/createdb" r_pgrestore
measure "pg_restore -j $jobs (directory dump)" pg_restore -j "$jobs" -d r_pgrestore "$work/dir.dump"
"$pgbin/dropdb" r_pgrestore
mkdir -m 755 "$work/drilltmp"
measure "cairn pg drill --scratch-cluster --jobs $jobs" sh -c "TMPDIR='$work/drilltmp' CAIRN_REPOSITORY='$work/repo-pg' CAIRN_CACHE_DIR='$work/cache-pg' '$cairn' pg drill latest --scratch-cluster --jobs '$jobs' > '$work/drill.txt'"
sed 's/^/  /' "$work/drill.txt"
