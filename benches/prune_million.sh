#!/usr/bin/env bash
# Measures prune on a repository with more than a million blobs (many tiny files): peak RSS and
# wall/CPU time of backup, forget and prune, so the memory bound of prune's mark phase (kept in the
# cache database, not in memory) can be checked.
#
#   benches/prune_million.sh [WORKDIR] [FILES]     defaults: /var/tmp/cairn-million, 1100000
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/var/tmp/cairn-million}
files=${2:-1100000}
cargo build --release --locked --quiet
cairn=$PWD/target/release/cairn
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
mkdir -p "$work"
src=$work/src
if [ ! -f "$src/.complete-$files" ]; then
  rm -rf "$src"
  python3 - "$src" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:04d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:07d}"), "w") as f:
        f.write(f"tiny file number {i}\n")
PY
  touch "$src/.complete-$files"
fi
export CAIRN_REPOSITORY=$work/repo CAIRN_PASSWORD=bench CAIRN_CACHE_DIR=$work/cache
rm -rf "$work/repo" "$work/cache"
"$cairn" init --quiet
measure() {
  local name=$1; shift
  /usr/bin/time -f "$name: wall %e s, cpu %U+%S s, peak RSS %M KiB" "$@" > /dev/null
}
measure "backup of $files tiny files" "$cairn" backup --quiet --time "2026-01-01 00:00:00" "$src"
# Half the files change: the second snapshot shares half of the blobs with the first.
find "$src" -name 'f*[02468]' -type f -print0 | xargs -0 -n 5000 sed -i 's/$/ changed/'
measure "backup after changing half the files" "$cairn" backup --quiet --time "2026-01-01 01:00:00" "$src"
"$cairn" prune --dry-run --json | python3 -c 'import json,sys; p=json.load(sys.stdin)["plan"]; print("blobs used:", p["used_blobs"], "packs:", p["packs_total"])'
measure "forget --keep-last 1" "$cairn" forget --keep-last 1 --quiet
measure "prune" "$cairn" prune --quiet
"$cairn" prune --dry-run --json | python3 -c 'import json,sys; p=json.load(sys.stdin)["plan"]; print("after prune: blobs used:", p["used_blobs"], "packs:", p["packs_total"], "unused bytes:", p["bytes_unused_after"])'
du -sh "$work/repo" "$work/cache"
