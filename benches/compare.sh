#!/usr/bin/env bash
# End-to-end comparison of cairn, restic and borg on the same data, each with its own fresh
# repository on local disk, measured step by step (wall, CPU, peak RSS, repository growth).
#
# usage: benches/compare.sh [options] [WORKDIR]          WORKDIR defaults to /var/tmp/cairn-bench
#   --hours N           hourly dumps backed up after the first one (default 6)
#   --tools LIST        comma-separated subset of cairn,restic,borg (default: all three)
#   --chunk-study LIST  instead of the comparison, back up the dump series with cairn only, one fresh
#                       repository per average chunk size in KiB (min = avg/2, max = 4*avg),
#                       e.g. --chunk-study 256,512,1024,2048
#   --scale N           pgbench scale of the database (default 100, a dump of about 1 GB)
#   --tree-files N      files in the small-file tree (default 30000)
#   --forget-prune      give the hourly snapshots the times 2026-11-01 00:00, 01:00, ... (UTC) and, after
#                       the last hour, run each tool's forget + prune with the policy below and measure it
#                       (restic: forget --prune; borg: prune + compact); then restore every snapshot cairn
#                       kept and compare it with its dump; the tree steps are left out
#   --policy "OPTS"     the keep options for --forget-prune (default: "--keep-hourly 24 --keep-daily 7
#                       --keep-weekly 4 --keep-monthly 12"), spelled the same for all three tools
#   --data-only         generate (or extend) the data and stop
#   --max-load L        before each step wait (at most 3 minutes) until the 1-minute load average is
#                       below L, so that other work on the machine does not distort one tool's numbers
# environment: WARM_MIB (memory warmed before each step, default 3072; 0 to skip),
#   CAIRN (cairn binary; default target/release/cairn of this checkout), CAIRN_PASSWORD,
#   RESTIC_PASSWORD, BORG_PASSPHRASE (throwaway defaults are set), PG_BIN (PostgreSQL's bin folder).
#
# Data (generated once under WORKDIR/data and reused by later runs; delete that folder to rebuild):
#   dump-000.sql      pg_dump of a pgbench database (scale N) whose accounts.filler holds md5 text
#   dump-001.sql ...  the same after `pgbench -t 300 -c 2` per "hour" (a throwaway cluster on port
#                     5433 with its own socket folder; its data folder is kept, stopped, so that a
#                     later run with more --hours continues the series)
#   tree/             tens of thousands of small files of varied sizes in nested folders
# Steps, each after dropping the page cache: first backup of the dump; one backup per hourly dump
# (the dump is hard-linked to the same path each hour, as a cron job would write it); first and
# unchanged second backup of the tree (not in --chunk-study); restore of the last dump snapshot
# (checked with cmp afterwards).
# Results: a Markdown table on standard output and in WORKDIR/results/, raw rows in a TSV beside it.
set -euo pipefail

HOURS=6
TOOLS=cairn,restic,borg
CHUNK_STUDY=
SCALE=100
TREE_FILES=30000
DATA_ONLY=
FORGET_PRUNE=
POLICY="--keep-hourly 24 --keep-daily 7 --keep-weekly 4 --keep-monthly 12"
MAX_LOAD=
WORK=
while (($#)); do
    case "$1" in
        --hours) HOURS=$2; shift 2 ;;
        --tools) TOOLS=$2; shift 2 ;;
        --chunk-study) CHUNK_STUDY=$2; shift 2 ;;
        --scale) SCALE=$2; shift 2 ;;
        --tree-files) TREE_FILES=$2; shift 2 ;;
        --data-only) DATA_ONLY=1; shift ;;
        --forget-prune) FORGET_PRUNE=1; shift ;;
        --policy) POLICY=$2; shift 2 ;;
        --max-load) MAX_LOAD=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) WORK=$1; shift ;;
    esac
done
WORK=${WORK:-/var/tmp/cairn-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
CAIRN=${CAIRN:-$HERE/../target/release/cairn}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
PG_PORT=5433
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-bench-password}
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-bench-password}
export BORG_PASSPHRASE=${BORG_PASSPHRASE:-bench-password}
export BORG_DISPLAY_PASSPHRASE=no BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

DATA=$WORK/data
PGDIR=$WORK/pg
STAGE=$WORK/stage
REPOS=$WORK/repos
CACHES=$WORK/cache
LOGS=$WORK/logs
RESULTS=$WORK/results
mkdir -p "$DATA" "$STAGE" "$LOGS" "$RESULTS"

say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
dump_path() { printf '%s/dump-%03d.sql' "$DATA" "$1"; }
need() { command -v "$1" >/dev/null || die "$1 not found ($2)"; }

# ---------------------------------------------------------------- data: PostgreSQL dump series
PG_STARTED=
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_client() { local tool=$1; shift; "$PG_BIN/$tool" -h "$PGDIR/sock" -p "$PG_PORT" -U postgres "$@"; }
pg_stop() {
    if [ -n "$PG_STARTED" ]; then
        pg_as "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null || true
        PG_STARTED=
    fi
}
trap pg_stop EXIT

pg_start() {
    [ -x "$PG_BIN/initdb" ] || die "PostgreSQL server not found (apt-get install -y postgresql, or set PG_BIN)"
    if [ ! -f "$PGDIR/data/PG_VERSION" ]; then
        say "initdb of a throwaway cluster in $PGDIR (port $PG_PORT)"
        mkdir -p "$PGDIR/data" "$PGDIR/sock"
        [ "$(id -u)" = 0 ] && chown -R postgres: "$PGDIR"
        pg_as "$PG_BIN/initdb" -D "$PGDIR/data" -A trust --no-sync -E UTF8 --locale=C >"$LOGS/initdb.log"
    fi
    # Our own port and socket folder: a cluster on 5432 is never touched.
    if pg_as "$PG_BIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
        say "cluster in $PGDIR already running"
    else
        pg_as "$PG_BIN/pg_ctl" -D "$PGDIR/data" -w -l "$PGDIR/server.log" -o "-k $PGDIR/sock -p $PG_PORT \
            -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_wal_size=8GB -c shared_buffers=256MB" start >/dev/null
        PG_STARTED=1
    fi
}

make_dumps() {
    local h first_missing=
    for ((h = 0; h <= HOURS; h++)); do
        if [ ! -f "$(dump_path "$h")" ]; then first_missing=$h; break; fi
    done
    if [ -z "$first_missing" ]; then say "dumps 0..$HOURS exist, reusing them"; return; fi
    need pgbench "apt-get install -y postgresql-client"
    if ((first_missing > 0)) && [ ! -f "$PGDIR/data/PG_VERSION" ]; then
        die "$DATA has dumps up to hour $((first_missing - 1)) but the cluster that made them is gone; delete $DATA to rebuild"
    fi
    pg_start
    if ((first_missing == 0)); then
        say "creating the database: pgbench -i -s $SCALE, then md5 text in pgbench_accounts.filler"
        pg_client dropdb --if-exists bench
        pg_client createdb bench
        pg_client pgbench -i -s "$SCALE" -q bench >"$LOGS/pgbench-init.log" 2>&1
        # pgbench's filler is blank and compresses ~100x; md5 text compresses about 2x, like real rows.
        pg_client psql -q -v ON_ERROR_STOP=1 -d bench >>"$LOGS/pgbench-init.log" <<'SQL'
UPDATE pgbench_accounts SET filler = md5(aid::text) || md5('filler' || aid::text);
VACUUM ANALYZE;
CHECKPOINT;
SQL
        echo 0 >"$PGDIR/state-hour"
    fi
    for ((h = first_missing; h <= HOURS; h++)); do
        # state-hour says how many rounds of transactions the database has had; after an interrupted
        # run the round for this hour may already be done.
        if ((h > 0)) && (($(cat "$PGDIR/state-hour") < h)); then
            pg_client pgbench -n -t 300 -c 2 --random-seed="$h" bench >"$LOGS/pgbench-$h.log" 2>&1
            echo "$h" >"$PGDIR/state-hour"
        fi
        say "pg_dump hour $h"
        pg_client pg_dump -f "$(dump_path "$h").tmp" bench
        mv "$(dump_path "$h").tmp" "$(dump_path "$h")"
    done
    pg_stop
}

# ---------------------------------------------------------------- data: small-file tree
make_tree() {
    if [ -f "$DATA/tree.done" ] && [ "$(cat "$DATA/tree.done")" = "$TREE_FILES" ]; then
        say "tree of $TREE_FILES files exists, reusing it"
        return
    fi
    say "generating a tree of $TREE_FILES small files"
    rm -rf "$DATA/tree"
    python3 - "$DATA/tree" "$TREE_FILES" <<'PY'
import os, random, sys
root, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261122)
words = ("config user order invoice session token cache upload image report error warning info debug "
         "customer payment shipped pending refund storage request response timeout").split()
for i in range(count):
    # Three levels of folders, ~10 files per leaf folder.
    leaf = i // 10
    d = os.path.join(root, f"d{leaf % 10:02d}", f"e{(leaf // 10) % 15:02d}", f"f{leaf // 150:03d}")
    os.makedirs(d, exist_ok=True)
    r = rng.random()
    size = int(rng.uniform(100, 4096) if r < 0.75 else rng.uniform(4096, 32768) if r < 0.98 else rng.uniform(32768, 524288))
    if rng.random() < 0.6:  # text (config, logs, source) ...
        line = " ".join(rng.choice(words) for _ in range(12)) + f" {i}\n"
        body = (line * (size // len(line) + 1)).encode()[:size]
    else:                   # ... or already-compressed content (images, archives)
        body = rng.randbytes(size)
    with open(os.path.join(d, f"file{i:06d}.{'txt' if body[:1].isalpha() else 'bin'}"), "wb") as f:
        f.write(body)
PY
    echo "$TREE_FILES" >"$DATA/tree.done"
}

# ---------------------------------------------------------------- measuring
DROP_CACHES=no
if sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then DROP_CACHES=yes; fi
drop_caches() { sync; if [ "$DROP_CACHES" = yes ]; then echo 3 >/proc/sys/vm/drop_caches; fi; }
# Freed memory on a VM may go back to the host within seconds (free page reporting, ballooning),
# and the next process to touch it pays for getting it back: the system time of one step swung by
# up to 2x between runs on the VM this was written on. Writing and deleting WARM_MIB of tmpfs right
# before each step gives every tool the same freshly used free memory to start from.
WARM_MIB=${WARM_MIB:-3072}
warm_memory() {
    [ "$WARM_MIB" -gt 0 ] && [ -d /dev/shm ] && [ -w /dev/shm ] || return 0
    head -c $((WARM_MIB << 20)) /dev/zero >/dev/shm/cairn-bench-warm 2>/dev/null || true
    rm -f /dev/shm/cairn-bench-warm
}
size_of() { du -sb "$1" | cut -f1; }
wait_for_quiet() {
    [ -n "$MAX_LOAD" ] || return 0
    local waited=0
    while awk -v max="$MAX_LOAD" '{ exit !($1 >= max) }' /proc/loadavg && ((waited < 180)); do
        sleep 5; waited=$((waited + 5))
    done
    ((waited == 0)) || say "waited ${waited}s for the load to fall below $MAX_LOAD (now $(cut -d' ' -f1 /proc/loadavg))"
}

TSV=
# The index of each tool's repository: cairn and restic keep index files in index/, borg a hash table in index.N.
index_size() {
    case $1 in
        borg) find "$2" -maxdepth 1 -name 'index.*' -printf '%s\n' | awk '{s += $1} END {print s + 0}' ;;
        *) size_of "$2/index" ;;
    esac
}
# measure TOOL STEP INPUT_BYTES REPO -- COMMAND...: one row in $TSV, after dropping the page cache.
measure() {
    local tool=$1 step=$2 input=$3 repo=$4; shift 5
    local before after log=$LOGS/$tool-$step.log load wall user sys rss_kb
    before=$(size_of "$repo")
    wait_for_quiet
    drop_caches
    warm_memory
    load=$(cut -d' ' -f1 /proc/loadavg)
    if ! /usr/bin/time -f '%e %U %S %M' -o "$LOGS/time.out" "$@" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "$tool $step failed (log: $log)"
    fi
    after=$(size_of "$repo")
    read -r wall user sys rss_kb < <(tail -n1 "$LOGS/time.out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$wall" "$user" "$sys" "$rss_kb" \
        "$input" "$((after - before))" "$after" "$(index_size "$tool" "$repo")" "$load" >>"$TSV"
    awk -v t="$tool" -v s="$step" -v w="$wall" -v c="$user + $sys" -v u="$user" -v y="$sys" -v r="$rss_kb" \
        -v a="$((after - before))" -v l="$load" 'BEGIN { printf "%-10s %-15s wall %7.2fs  cpu %7.2fs  rss %5d MB  added %9.1f MB  load %s\n", t, s, w, u + y, r / 1024, a / 1e6, l }' >&2
}

repo_of() { echo "$REPOS/$1"; }

tool_init() {
    local tool=$1 repo; repo=$(repo_of "$1"); shift
    case $tool in
        cairn*) "$CAIRN" -r "$repo" --cache-dir "$CACHES/$tool" -q init "$@" ;;
        restic) restic -r "$repo" --cache-dir "$CACHES/restic" init --repository-version 2 ;;
        borg) BORG_BASE_DIR=$CACHES/borg borg init --encryption "$BORG_ENCRYPTION" "$repo" ;;
    esac >"$LOGS/$tool-init.log" 2>&1 || die "$tool init failed (log: $LOGS/$tool-init.log)"
}

# tool_backup TOOL STEP INPUT_BYTES PATH [TIME]   (TIME: "YYYY-MM-DD HH:MM:SS", UTC)
tool_backup() {
    local tool=$1 step=$2 input=$3 path=$4 when=${5:-} repo; repo=$(repo_of "$1")
    local cairn_time=() restic_time=() borg_time=()
    if [ -n "$when" ]; then
        cairn_time=(--time "${when/ /T}Z"); restic_time=(--time "$when"); borg_time=(--timestamp "${when/ /T}")
    fi
    case $tool in
        cairn*) measure "$tool" "$step" "$input" "$repo" -- "$CAIRN" -r "$repo" --cache-dir "$CACHES/$tool" --json backup \
            "${cairn_time[@]}" "$path" ;;
        restic) measure "$tool" "$step" "$input" "$repo" -- env TZ=UTC restic -r "$repo" --cache-dir "$CACHES/restic" \
            --compression auto backup --json "${restic_time[@]}" "$path" ;;
        borg) measure "$tool" "$step" "$input" "$repo" -- env BORG_BASE_DIR="$CACHES/borg" borg create \
            --compression lz4 "${borg_time[@]}" "$repo::$step" "$path" ;;
    esac
}

# The time of hour H of the series: 2026-11-01 00:00:00 UTC plus H hours.
hour_time() { date -u -d "2026-11-01 00:00:00 UTC + $1 hours" '+%Y-%m-%d %H:%M:%S'; }

# tool_forget_prune TOOL: forget with $POLICY, then reclaim space, as one measured step.
tool_forget_prune() {
    local tool=$1 repo; repo=$(repo_of "$1")
    local -a policy; read -r -a policy <<<"$POLICY"
    case $tool in
        cairn*) measure "$tool" forget-prune 0 "$repo" -- "$CAIRN" -r "$repo" --cache-dir "$CACHES/$tool" -q \
            forget "${policy[@]}" --prune ;;
        restic) measure "$tool" forget-prune 0 "$repo" -- env TZ=UTC restic -r "$repo" --cache-dir "$CACHES/restic" -q \
            forget "${policy[@]}" --prune ;;
        borg) measure "$tool" forget-prune 0 "$repo" -- env BORG_BASE_DIR="$CACHES/borg" sh -c \
            'borg prune "$@" "$0" && borg compact "$0"' "$repo" "${policy[@]}" ;;
    esac
}

# Unused bytes left in the repository after prune, as the tool itself reports them.
unused_after() {
    local tool=$1 repo; repo=$(repo_of "$1")
    case $tool in
        cairn*) "$CAIRN" -r "$repo" --cache-dir "$CACHES/$tool" --json prune --dry-run | jq -r '.plan.bytes_unused_after' ;;
        restic) restic -r "$repo" --cache-dir "$CACHES/restic" prune --dry-run 2>/dev/null \
            | awk '/unused size after prune:/ { v = $5; u = $6; m = 1
                   if (u ~ /^KiB/) m = 1024; if (u ~ /^MiB/) m = 1048576; if (u ~ /^GiB/) m = 1073741824
                   printf "%.0f\n", v * m }' || echo "n/a" ;;
        borg) echo "n/a" ;;
    esac
}

# Restores every snapshot cairn kept and compares each with the dump of its hour.
check_kept_cairn() {
    local tool=$1 repo; repo=$(repo_of "$1")
    local ok=0 bad=0 id secs h target=$WORK/restore/$1
    while read -r id secs; do
        h=$(( (secs - $(date -u -d "2026-11-01 00:00:00 UTC" +%s)) / 3600 ))
        rm -rf "$target"; mkdir -p "$target"
        "$CAIRN" -r "$repo" --cache-dir "$CACHES/$tool" -q restore "$id" --target "$target"
        if cmp -s "$(find "$target" -type f -name db.sql | head -n1)" "$(dump_path "$h")"; then
            ok=$((ok + 1))
        else
            bad=$((bad + 1)); say "WARNING: $tool snapshot $id (hour $h) does not restore to its dump"
        fi
    done < <("$CAIRN" -r "$repo" --cache-dir "$CACHES/$tool" --json snapshots | jq -r '.[] | "\(.id) \(.time_ns / 1e9 | floor)"')
    rm -rf "$target"
    echo "$ok of $((ok + bad)) kept snapshots restore byte for byte"
}

# The id of the snapshot the last backup step of TOOL wrote (borg: the archive name).
snapshot_of() {
    local tool=$1 step=$2 log=$LOGS/$1-$2.log
    case $tool in
        cairn*) jq -r 'select(.snapshot_id != null) | .snapshot_id' "$log" | tail -n1 ;;
        restic) jq -r 'select(.message_type == "summary") | .snapshot_id' "$log" | tail -n1 ;;
        borg) echo "$step" ;;
    esac
}

tool_restore() {
    local tool=$1 step=$2 snapshot=$3 input=$4 target=$WORK/restore/$1 repo; repo=$(repo_of "$1")
    rm -rf "$target"; mkdir -p "$target"
    case $tool in
        cairn*) measure "$tool" "$step" "$input" "$repo" -- "$CAIRN" -r "$repo" --cache-dir "$CACHES/$tool" -q \
            restore "$snapshot" --target "$target" ;;
        restic) measure "$tool" "$step" "$input" "$repo" -- restic -r "$repo" --cache-dir "$CACHES/restic" -q \
            restore "$snapshot" --target "$target" ;;
        borg) measure "$tool" "$step" "$input" "$repo" -- env BORG_BASE_DIR="$CACHES/borg" sh -c \
            'cd "$1" && exec borg extract "$2"' sh "$target" "$repo::$snapshot" ;;
    esac
}

check_restore() {
    local tool=$1 expected=$2 found
    found=$(find "$WORK/restore/$tool" -type f -name db.sql | head -n1)
    if [ -n "$found" ] && cmp -s "$found" "$expected"; then echo "ok"; else echo "MISMATCH"; fi
    rm -rf "$WORK/restore/$tool"
}

# ---------------------------------------------------------------- run
need python3 "apt-get install -y python3"
need jq "apt-get install -y jq"
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install -y time)"
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
if [ -n "$CHUNK_STUDY" ]; then
    IFS=, read -r -a AVGS <<<"$CHUNK_STUDY"
    TOOL_LIST=()
    for avg in "${AVGS[@]}"; do TOOL_LIST+=("cairn-$avg"); done
fi
for tool in "${TOOL_LIST[@]}"; do
    [ -z "$DATA_ONLY" ] || break
    case $tool in
        cairn*) [ -x "$CAIRN" ] || die "cairn binary $CAIRN not found (cargo build --release, or set CAIRN)" ;;
        restic) need restic "apt-get install -y restic" ;;
        borg) need borg "apt-get install -y borgbackup" ;;
        *) die "unknown tool $tool" ;;
    esac
done
# borg: HMAC-SHA256 is its fastest authenticated mode when the CPU has SHA extensions, BLAKE2b otherwise.
BORG_ENCRYPTION=repokey-blake2
grep -qw sha_ni /proc/cpuinfo && BORG_ENCRYPTION=repokey

make_dumps
[ -n "$CHUNK_STUDY" ] || make_tree
[ -z "$DATA_ONLY" ] || exit 0

STAMP=$(date +%Y%m%d-%H%M%S)
TSV=$RESULTS/$STAMP.tsv
: >"$TSV"
rm -rf "$REPOS" "$CACHES" "$WORK/restore"
mkdir -p "$REPOS" "$CACHES"
for tool in "${TOOL_LIST[@]}"; do
    case $tool in
        cairn-*) avg=${tool#cairn-}; tool_init "$tool" --chunk-size "$((avg / 2)),$avg,$((avg * 4))" ;;
        *) tool_init "$tool" ;;
    esac
done

# Each step runs for every tool before the next step, so drifting machine load hits all alike.
when() { [ -z "$FORGET_PRUNE" ] || hour_time "$1"; }
ln -f "$(dump_path 0)" "$STAGE/db.sql"
for tool in "${TOOL_LIST[@]}"; do tool_backup "$tool" first "$(size_of "$STAGE/db.sql")" "$STAGE/db.sql" "$(when 0)"; done
for ((h = 1; h <= HOURS; h++)); do
    ln -f "$(dump_path "$h")" "$STAGE/db.sql"
    step=$(printf 'hour-%02d' "$h")
    for tool in "${TOOL_LIST[@]}"; do
        tool_backup "$tool" "$step" "$(size_of "$STAGE/db.sql")" "$STAGE/db.sql" "$(when "$h")"
    done
done
declare -A RESTORED UNUSED KEPT
if [ -n "$FORGET_PRUNE" ]; then
    for tool in "${TOOL_LIST[@]}"; do
        tool_forget_prune "$tool"
        UNUSED[$tool]=$(unused_after "$tool")
        case $tool in cairn*) KEPT[$tool]=$(check_kept_cairn "$tool") ;; esac
    done
elif [ -z "$CHUNK_STUDY" ]; then
    tree_bytes=$(size_of "$DATA/tree")
    for tool in "${TOOL_LIST[@]}"; do tool_backup "$tool" tree-first "$tree_bytes" "$DATA/tree"; done
    for tool in "${TOOL_LIST[@]}"; do tool_backup "$tool" tree-unchanged "$tree_bytes" "$DATA/tree"; done
fi
last_step=$(printf 'hour-%02d' "$HOURS"); ((HOURS > 0)) || last_step=first
for tool in "${TOOL_LIST[@]}"; do
    tool_restore "$tool" restore "$(snapshot_of "$tool" "$last_step")" "$(size_of "$(dump_path "$HOURS")")"
    RESTORED[$tool]=$(check_restore "$tool" "$(dump_path "$HOURS")")
    [ "${RESTORED[$tool]}" = ok ] || say "WARNING: $tool restored a file that differs from $(dump_path "$HOURS")"
done
rm -f "$STAGE/db.sql"

# ---------------------------------------------------------------- report
{
    echo "meta	date	$(date -Is)"
    echo "meta	machine	$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB RAM"
    echo "meta	kernel	$(uname -r)"
    echo "meta	page cache dropped before each step	$DROP_CACHES"
    echo "meta	memory warmed before each step	${WARM_MIB} MiB written to and deleted from /dev/shm"
    echo "meta	dump	hour 0: $(size_of "$(dump_path 0)") bytes; hour $HOURS: $(size_of "$(dump_path "$HOURS")") bytes; pgbench scale $SCALE, -t 300 -c 2 per hour"
    [ -z "$FORGET_PRUNE" ] || echo "meta	forget + prune	policy: $POLICY (snapshot times: hour H of the series is 2026-11-01 00:00 UTC + H hours)"
    [ -n "$CHUNK_STUDY$FORGET_PRUNE" ] || echo "meta	tree	$TREE_FILES files, $(find "$DATA/tree" -type d | wc -l) folders, $(size_of "$DATA/tree") bytes"
    for tool in "${TOOL_LIST[@]}"; do
        case $tool in
            cairn*) echo "meta	$tool	$("$CAIRN" --version) ($(readlink -f "$CAIRN")), zstd level 1 (default)$([ "$tool" = cairn ] && echo ', chunks 128K/256K/1M (default)' || echo ", chunks $((${tool#cairn-} / 2))K/${tool#cairn-}K/$((${tool#cairn-} * 4))K"), default argon2id"
                echo "meta	$tool index files	$(find "$(repo_of "$tool")/index" -type f | wc -l)" ;;
            restic) echo "meta	restic	$(restic version | head -n1), repository v2, --compression auto" ;;
            borg) echo "meta	borg	$(borg --version), --encryption $BORG_ENCRYPTION, --compression lz4 (default), default chunker (19,23,21,4095)" ;;
        esac
        [ -z "${RESTORED[$tool]:-}" ] || echo "meta	$tool restore check	cmp with the dump: ${RESTORED[$tool]}"
        [ -z "${UNUSED[$tool]:-}" ] || echo "meta	$tool unused bytes after prune	${UNUSED[$tool]}"
        [ -z "${KEPT[$tool]:-}" ] || echo "meta	$tool after prune	${KEPT[$tool]}"
    done
} >"$TSV.meta"
python3 - "$TSV" >"$RESULTS/$STAMP.md" <<'PY'
import sys, statistics as st
tsv = sys.argv[1]
meta = [l.rstrip("\n").split("\t")[1:] for l in open(tsv + ".meta")]
M = 1e6
recs = []
for l in open(tsv):
    tool, step, wall, user, sys_, rss, inp, added, repo, index, load = l.rstrip("\n").split("\t")
    wall = float(wall)
    recs.append(dict(tool=tool, step=step, wall=wall, cpu=float(user) + float(sys_), rss=int(rss) / 1024,
                     inp=int(inp), added=int(added), repo=int(repo), index=int(index), load=load,
                     mbs=int(inp) / M / max(wall, 0.01)))
tools = list(dict.fromkeys(x["tool"] for x in recs))
by = {(x["tool"], x["step"]): x for x in recs}
hours = [s for s in dict.fromkeys(x["step"] for x in recs) if s.startswith("hour-")]

def line(cells): print("| " + " | ".join(str(c) for c in cells) + " |")
def head(cells): line(cells); line(["---"] * len(cells))
def fmt(x, d=1): return f"{x:,.{d}f}"

def hourly(t):
    hs = [by[(t, h)] for h in hours]
    return dict(tool=t, wall=st.mean(h["wall"] for h in hs), cpu=st.mean(h["cpu"] for h in hs),
                mbs=sum(h["inp"] for h in hs) / M / sum(h["wall"] for h in hs), rss=max(h["rss"] for h in hs),
                added=st.mean(h["added"] for h in hs), repo=hs[-1]["repo"], index=hs[-1]["index"],
                load=f'{min(h["load"] for h in hs)}–{max(h["load"] for h in hs)}')

print("## Environment\n")
for k, v in meta:
    print(f"- **{k}**: {v}")
print("\nMB = 10^6 bytes. MB/s = input bytes / wall time. CPU = user + system seconds. Peak RSS = largest")
print("resident set of any process in the step. Added = growth of the repository folder in the step; repo and")
print("index = sizes after the step. Load = 1-minute load average just before the step (it includes the")
print("previous step's own processes). No tool fsyncs restored files, so restore times exclude their writeback.\n")

print("## Summary\n")
head(["step", "tool", "wall s", "CPU s", "MB/s", "peak RSS MB", "added MB", "repo MB", "index MB", "load"])
steps = ["first"] + (["hourly"] if hours else []) + \
    [s for s in ("tree-first", "tree-unchanged", "forget-prune", "restore") if any(x["step"] == s for x in recs)]
for step in steps:
    for t in tools:
        x, name = (hourly(t), f"hourly (mean of {len(hours)}; RSS: max)") if step == "hourly" else (by[(t, step)], step)
        line([name, t, fmt(x["wall"], 2), fmt(x["cpu"], 2), fmt(x["mbs"]), fmt(x["rss"], 0), fmt(x["added"] / M),
              fmt(x["repo"] / M), fmt(x["index"] / M, 2), x["load"]])

if hours:
    print("\n## Hourly backups\n")
    head(["hour"] + [f"{t} {c}" for t in tools for c in ("wall s", "CPU s", "added MB")])
    for h in hours:
        line([h] + [v for t in tools for v in (fmt(by[(t, h)]["wall"], 2), fmt(by[(t, h)]["cpu"], 2),
                                               fmt(by[(t, h)]["added"] / M))])

if any(x["step"] == "forget-prune" for x in recs):
    metad = dict((k, v) for k, v in meta)
    print("\n## Forget + prune\n")
    print("Reclaimed = how much the repository folder shrank in the step. Unused after = bytes in the repository")
    print("that no kept snapshot uses, as the tool's own dry-run prune reports them (borg has no such report).\n")
    head(["tool", "wall s", "CPU s", "peak RSS MB", "repo before MB", "reclaimed MB", "repo after MB", "unused after MB", "unused %"])
    for t in tools:
        x = by[(t, "forget-prune")]
        unused = metad.get(f"{t} unused bytes after prune", "n/a")
        pct = "n/a" if unused in ("n/a", "", "null") else f"{100 * int(unused) / max(x['repo'], 1):.1f}"
        line([t, fmt(x["wall"], 2), fmt(x["cpu"], 2), fmt(x["rss"], 0), fmt((x["repo"] - x["added"]) / M),
              fmt(-x["added"] / M), fmt(x["repo"] / M), "n/a" if pct == "n/a" else fmt(int(unused) / M), pct])
    if {"cairn", "restic"} <= set(tools):
        c, r = by[("cairn", "forget-prune")], by[("restic", "forget-prune")]
        print(f"\ncairn's forget + prune is {r['wall'] / c['wall']:.1f}× faster than restic's (goal ≥ 10×)", end="")
        if "borg" in tools:
            b = by[("borg", "forget-prune")]
            print(f" and {b['wall'] / c['wall']:.1f}× borg's prune + compact (goal ≥ 1×)", end="")
        print(".")

if {"cairn", "restic"} <= set(tools) and all(("cairn", s) in by for s in ("tree-unchanged", "restore")):
    print("\n## cairn against the targets\n")
    print("Factor = how many times better cairn is than restic (throughput ratio, or restic's time / cairn's time;")
    print("for bytes added, restic's / cairn's).\n")
    head(["target", "cairn", "restic", "factor", "goal", "met"])
    def target(name, cv, rv, unit, factor, goal):
        line([name, f"{fmt(cv, 2)} {unit}", f"{fmt(rv, 2)} {unit}", f"{factor:.2f}×", f"≥ {goal}×",
              "yes" if factor >= goal else "**no**"])
    cf, rf = by[("cairn", "first")], by[("restic", "first")]
    target("first backup throughput", cf["mbs"], rf["mbs"], "MB/s", cf["mbs"] / rf["mbs"], 4)
    if hours:
        ch, rh = hourly("cairn"), hourly("restic")
        target("hourly backup speed (mean wall)", ch["wall"], rh["wall"], "s", rh["wall"] / ch["wall"], 4)
        target("hourly bytes added (mean)", ch["added"] / M, rh["added"] / M, "MB", rh["added"] / max(ch["added"], 1), 1)
    ct, rt = by[("cairn", "tree-unchanged")], by[("restic", "tree-unchanged")]
    target("unchanged tree re-backup speed", ct["wall"], rt["wall"], "s", rt["wall"] / ct["wall"], 4)
    cr, rr = by[("cairn", "restore")], by[("restic", "restore")]
    target("restore throughput", cr["mbs"], rr["mbs"], "MB/s", cr["mbs"] / rr["mbs"], 4)
    peak = max(x["rss"] for x in recs if x["tool"] == "cairn")
    line(["cairn peak RSS, every step", f"{fmt(peak, 0)} MB", "", "", "< 200 MB", "yes" if peak < 200 else "**no**"])
PY
cp "$RESULTS/$STAMP.md" "$RESULTS/latest.md"
cat "$RESULTS/$STAMP.md"
say "results: $RESULTS/$STAMP.md (raw rows: $TSV)"
