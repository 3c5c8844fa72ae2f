#!/usr/bin/env bash
# Builds cairn and runs its main job on the embedded default, a repository on the local disk:
# init (once), back up a folder, list snapshots, restore the latest and compare it with the source.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
cairn=$PWD/target/release/cairn
export CAIRN_REPOSITORY=${CAIRN_REPOSITORY:-/tmp/cairn-quickstart/repo}
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-quickstart-password}
source_dir=${1:-$PWD/README.md}
[ -f "$CAIRN_REPOSITORY/config" ] || "$cairn" init
"$cairn" backup "$source_dir" --tag quickstart
"$cairn" snapshots
target=$(mktemp -d)
"$cairn" restore latest --target "$target" --verify
abs=$(realpath "$source_dir")
diff -r "$abs" "$target$abs" && echo "restored copy is identical: $target$abs"
