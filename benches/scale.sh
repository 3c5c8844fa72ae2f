#!/usr/bin/env bash
# How cairn's costs grow with the repository: for each size, a repository of N small data blobs is
# written directly by the generator (benches/examples/gen_repo.rs: ten snapshots, each owning a
# distinct tenth of the blobs in files of 100 blobs, folders of 1000 files; packs and index files
# as a backup writes them), then each step below is measured with /usr/bin/time (wall, CPU-s,
# peak RSS) on the release build:
#   generate            gen_repo itself (not a cairn command; shows how the data was made)
#   cache rebuild       the local cache deleted, then `cat tree` of one root tree (merges every index file)
#   backup dump         backup of a ~500 MB SQL-text dump (benches/examples/gen_dump.rs) into it
#   backup changed      backup of the same dump with 4 KiB rewritten in every 4 MiB (parent: the first)
#   snapshots           the listing (12 snapshots)
#   check               structure: every index file, pack sizes, every tree and blob reference
#   check subset 1%     check --read-data-subset 1%
#   forget              forget of one generated snapshot (10% of the blobs)
#   prune               prune after it (removes that 10%)
# and the local cache's size on disk per blob after the rebuild and after the prune.
#
# usage: benches/scale.sh [--blobs LIST] [--dump-mib N] [--keep] [WORKDIR]
#   --blobs LIST   comma-separated repository sizes in data blobs (default 1000000,3000000,10000000)
#   --dump-mib N   size of the dump backed up into each repository (default 512)
#   --keep         keep each size's repository (default: deleted after it is measured; 10M blobs take
#                  ~4.5 GB)
#   WORKDIR        default /var/tmp/cairn-scale
# Results: a Markdown table (one column per size) on standard output and in WORKDIR/results/, raw
# rows in a TSV beside it. The page cache is not dropped between steps (the repository fits in
# memory here); the 1-minute load average at each step is in the TSV.
set -euo pipefail

BLOBS=1000000,3000000,10000000
DUMP_MIB=512
KEEP=
WORK=
while (($#)); do
    case "$1" in
        --blobs) BLOBS=$2; shift 2 ;;
        --dump-mib) DUMP_MIB=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) WORK=$1; shift ;;
    esac
done
WORK=${WORK:-/var/tmp/cairn-scale}
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --locked --quiet -p cairn-cli
cargo build --release --locked --quiet -p cairn-benches --example gen_repo --example gen_dump
CAIRN=${CAIRN:-$PWD/target/release/cairn}
GEN_REPO=$PWD/target/release/examples/gen_repo
GEN_DUMP=$PWD/target/release/examples/gen_dump
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-scale-bench}
mkdir -p "$WORK/results"
stamp=$(date -u +%Y%m%d-%H%M%S)
TSV=$WORK/results/scale-$stamp.tsv
printf 'blobs\tstep\twall_s\tcpu_s\tpeak_rss_mib\tload1\n' > "$TSV"
say() { echo "== $*" >&2; }

# Runs a step under /usr/bin/time and appends its row; the command's output goes to WORKDIR/last.out.
measure() {
    local n=$1 step=$2; shift 2
    local load; load=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.out" "$@" > "$WORK/last.out"
    read -r wall user sys rss < "$WORK/time.out"
    local cpu; cpu=$(echo "$user + $sys" | bc)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$step" "$wall" "$cpu" "$((rss / 1024))" "$load" >> "$TSV"
    say "$n blobs, $step: wall $wall s, cpu $cpu s, peak RSS $((rss / 1024)) MiB (load $load)"
}

# Bytes per blob of the cache folder, as a row whose value sits in the wall column.
cache_size() {
    local n=$1 step=$2 blobs=$3
    local bytes; bytes=$(du -sb "$CAIRN_CACHE_DIR" | cut -f1)
    printf '%s\t%s\t%s\t\t\t\n' "$n" "$step" "$((bytes / blobs))" >> "$TSV"
    say "$n blobs, $step: $bytes bytes, $((bytes / blobs)) bytes per blob"
}

mkdir -p "$WORK/data"
if [ ! -f "$WORK/data/dump-0-$DUMP_MIB.sql" ]; then
    say "generating the dumps ($DUMP_MIB MiB)"
    "$GEN_DUMP" "$WORK/data/dump-0-$DUMP_MIB.sql" "$DUMP_MIB"
    "$GEN_DUMP" "$WORK/data/dump-1-$DUMP_MIB.sql" "$DUMP_MIB" 14 --changed
fi
STAGE=$WORK/stage
mkdir -p "$STAGE"

IFS=, read -r -a SIZES <<< "$BLOBS"
for n in "${SIZES[@]}"; do
    export CAIRN_REPOSITORY=$WORK/repo-$n CAIRN_CACHE_DIR=$WORK/cache-$n
    rm -rf "$CAIRN_REPOSITORY" "$CAIRN_CACHE_DIR"
    "$CAIRN" init --quiet
    say "df: $(df -h --output=avail "$WORK" | tail -n1)"
    measure "$n" generate "$GEN_REPO" "$CAIRN_REPOSITORY" "$n"
    say "repository: $(du -sh "$CAIRN_REPOSITORY" | cut -f1), df: $(df -h --output=avail "$WORK" | tail -n1)"
    root=$("$CAIRN" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["tree"])')
    rm -rf "$CAIRN_CACHE_DIR"
    measure "$n" "cache rebuild" "$CAIRN" cat tree "$root"
    cache_size "$n" "cache bytes/blob" "$n"
    ln -f "$WORK/data/dump-0-$DUMP_MIB.sql" "$STAGE/db.sql"
    measure "$n" "backup dump" "$CAIRN" backup --quiet --time "2026-02-01 00:00:00" "$STAGE/db.sql"
    ln -f "$WORK/data/dump-1-$DUMP_MIB.sql" "$STAGE/db.sql"
    measure "$n" "backup changed" "$CAIRN" backup --quiet --time "2026-02-01 01:00:00" "$STAGE/db.sql"
    measure "$n" snapshots "$CAIRN" snapshots
    measure "$n" check "$CAIRN" check --quiet
    measure "$n" "check subset 1%" "$CAIRN" check --quiet --read-data-subset 1%
    first=$("$CAIRN" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
    measure "$n" forget "$CAIRN" forget --quiet "$first"
    measure "$n" prune "$CAIRN" prune --quiet
    cache_size "$n" "cache bytes/blob after prune" "$((n - n / 10))"
    "$CAIRN" check --quiet > /dev/null || say "WARNING: check after prune failed"
    [ -n "$KEEP" ] || rm -rf "$CAIRN_REPOSITORY" "$CAIRN_CACHE_DIR"
done

# One row per step, one column per size: "wall s / CPU s / peak RSS MiB".
python3 - "$TSV" <<'PY' | tee "$WORK/results/scale-$stamp.md"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
sizes = list(dict.fromkeys(r["blobs"] for r in rows))
steps = list(dict.fromkeys(r["step"] for r in rows))
cell = {(r["blobs"], r["step"]): r for r in rows}
fmt = lambda n: f"{int(n)/1e6:g}M blobs"
print("| step | " + " | ".join(fmt(s) for s in sizes) + " |")
print("| --- |" + " --- |" * len(sizes))
for st in steps:
    out = []
    for s in sizes:
        r = cell.get((s, st))
        if r is None: out.append("")
        elif not r["cpu_s"]: out.append(r["wall_s"])
        else: out.append(f'{float(r["wall_s"]):.1f} s / {float(r["cpu_s"]):.1f} s / {r["peak_rss_mib"]} MiB')
    print(f"| {st} | " + " | ".join(out) + " |")
PY
