#!/usr/bin/env bash
# Builds cairn and runs its main job on the embedded default, a repository on the local disk:
# init (once), back up a folder and a piped database-style dump, list the snapshots, restore both
# and compare them with their sources.
#
# usage: scripts/quickstart.sh [FOLDER]      (default: this checkout's spec/ folder)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
cairn=$PWD/target/release/cairn
export CAIRN_REPOSITORY=${CAIRN_REPOSITORY:-/tmp/cairn-quickstart/repo}
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-quickstart-password}
source_dir=$(realpath "${1:-$PWD/spec}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

[ -f "$CAIRN_REPOSITORY/config" ] || "$cairn" init
echo "== backup of the folder $source_dir"
"$cairn" backup "$source_dir" --tag quickstart

# A stand-in for `pg_dump mydb | cairn backup --stdin ...`: a generated SQL dump through a pipe.
awk 'BEGIN { print "CREATE TABLE accounts (id int, owner text, balance int);";
             for (i = 1; i <= 50000; i++) printf "INSERT INTO accounts VALUES (%d, %cowner-%d%c, %d);\n", i, 39, i % 977, 39, (i * 7919) % 100000 }' \
    >"$work/accounts.sql"
echo "== backup of a piped dump ($(wc -c <"$work/accounts.sql") bytes)"
cat "$work/accounts.sql" | "$cairn" backup --stdin --stdin-filename accounts.sql --tag quickstart

echo "== snapshots"
"$cairn" snapshots --tag quickstart

echo "== restore of the folder, and the dump streamed back"
"$cairn" restore latest --path "$source_dir" --target "$work/restored" --verify
diff -r "$source_dir" "$work/restored$source_dir" && echo "restored folder is identical: $source_dir"
"$cairn" dump latest --path /accounts.sql /accounts.sql | cmp - "$work/accounts.sql" &&
    echo "dumped accounts.sql is identical"
