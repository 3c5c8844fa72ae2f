#!/usr/bin/env bash
# The local cache's rebuild (cache deleted, then `cat tree` of the newest snapshot's root tree,
# which merges every index file) on an existing repository, for one or more cairn binaries run one
# after the other on the same repository (e.g. an older build against this one), each measured with
# /usr/bin/time -v: wall, CPU-s (user + system), peak RSS, bytes written, the cache's size after.
# The repository is only read (a lock file aside). Make one with the generator:
#   cairn init --repo REPO && cargo run --release -p cairn-benches --example gen_repo -- REPO 1000000
#
# usage: benches/cache_rebuild.sh REPO WORKDIR [CAIRN_BINARY...]
#   REPO           the repository (password in CAIRN_PASSWORD, default scale-bench)
#   WORKDIR        where the caches go (deleted and made again for each binary)
#   CAIRN_BINARY   default: this worktree's target/release/cairn (built first)
# Results: one tab-separated row per binary on standard output
# (binary, wall_s, cpu_s, peak_rss_mib, written_mib, cache_bytes, load1).
set -euo pipefail
case "${1:-}" in -h|--help|"") sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
REPO=$1 WORK=$2
shift 2
cd "$(dirname "$0")/.."
if (($# == 0)); then
    cargo build --release --locked --quiet -p cairn-cli
    set -- "$PWD/target/release/cairn"
fi
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-scale-bench}
mkdir -p "$WORK"
printf 'binary\twall_s\tcpu_s\tpeak_rss_mib\twritten_mib\tcache_bytes\tload1\n'
for bin in "$@"; do
    cache=$WORK/cache
    root=$("$bin" --repo "$REPO" --cache-dir "$cache" snapshots --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["tree"])')
    rm -rf "$cache"
    load=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -v -o "$WORK/time.txt" "$bin" --repo "$REPO" --cache-dir "$cache" cat tree "$root" >/dev/null
    python3 - "$bin" "$(du -sb "$cache" | cut -f1)" "$load" "$WORK/time.txt" <<'PY'
import re, sys
binary, cache_bytes, load, path = sys.argv[1:]
t = open(path).read()
def field(name):
    return re.search(re.escape(name) + r": (.*)", t).group(1).strip()
wall = 0.0
for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
    wall = wall * 60 + float(part)
cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
rss = int(field("Maximum resident set size (kbytes)")) / 1024
written = int(field("File system outputs")) * 512 / 2**20
print(f"{binary}\t{wall:.1f}\t{cpu:.1f}\t{rss:.0f}\t{written:.0f}\t{cache_bytes}\t{load}")
PY
done
