#!/usr/bin/env bash
# Deep-check throughput: `cairn check --read-data` beside `restic check --read-data` and
# `borg check --verify-data`, on the same data, each tool with its own fresh repository on local disk.
#
# usage: benches/check_compare.sh [options] [WORKDIR]      WORKDIR defaults to /var/tmp/cairn-check-bench
#   --random-mb N   incompressible data in MiB (default 1536)
#   --sql-mb N      SQL-dump-like text in MiB (default 1024)
#   --tools LIST    comma-separated subset of cairn,restic,borg (default: all three)
#   --mode M        cold (page cache dropped before each check; needs root), warm (repository read
#                   once before each check), or both (default)
#   --runs N        checks per tool and mode; the table shows each (default 1)
# environment: CAIRN (binary; default target/release/cairn of this checkout, built if missing),
#   CAIRN_PASSWORD, RESTIC_PASSWORD, BORG_PASSPHRASE (throwaway defaults are set).
#
# The data (generated once under WORKDIR/data, deterministic, reused by later runs) is one file of
# AES-CTR keystream and one pgbench-like `INSERT` dump with random numbers and md5-like text. Each
# tool backs it up once with its defaults (cairn: zstd level 1; restic: repository v2, auto
# compression; borg: repokey-blake2, lz4), then each check runs under /usr/bin/time -v.
# Throughput is repository bytes read per wall-clock second. The 1-minute load average is recorded
# beside every run: the machine may be shared, and other work shows up there.
# Results: a Markdown table on standard output and in WORKDIR/results/check-<time>.md.
set -euo pipefail

RANDOM_MB=1536
SQL_MB=1024
TOOLS=cairn,restic,borg
MODE=both
RUNS=1
WORK=
while (($#)); do
    case "$1" in
        --random-mb) RANDOM_MB=$2; shift 2 ;;
        --sql-mb) SQL_MB=$2; shift 2 ;;
        --tools) TOOLS=$2; shift 2 ;;
        --mode) MODE=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "check_compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) WORK=$1; shift ;;
    esac
done
case "$MODE" in cold|warm|both) ;; *) echo "check_compare.sh: --mode is cold, warm or both" >&2; exit 2 ;; esac
WORK=${WORK:-/var/tmp/cairn-check-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
CAIRN=${CAIRN:-$HERE/../target/release/cairn}
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-bench-password}
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-bench-password}
export BORG_PASSPHRASE=${BORG_PASSPHRASE:-bench-password}
export BORG_DISPLAY_PASSPHRASE=no BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
DATA=$WORK/data
REPOS=$WORK/repos
LOGS=$WORK/logs
RESULTS=$WORK/results
mkdir -p "$DATA" "$REPOS" "$LOGS" "$RESULTS"

say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
want() { [[ ",$TOOLS," == *",$1,"* ]]; }
load1() { cut -d' ' -f1 /proc/loadavg; }

[ -x /usr/bin/time ] || die "/usr/bin/time not found (Debian package 'time')"
for t in restic borg; do
    if want "$t" && ! command -v "$t" >/dev/null; then die "$t not found (Debian package '$([ "$t" = borg ] && echo borgbackup || echo restic)')"; fi
done
if want cairn && [ ! -x "$CAIRN" ]; then
    say "building cairn (release)"
    (cd "$HERE/.." && cargo build --release --locked -p cairn-cli) >&2
fi
if [ "$MODE" != warm ] && [ "$(id -u)" != 0 ]; then die "--mode $MODE drops the page cache and needs root; use --mode warm"; fi

# ---------------------------------------------------------------- data
if [ ! -s "$DATA/random.bin" ] || [ "$(stat -c %s "$DATA/random.bin")" != $((RANDOM_MB << 20)) ]; then
    say "generating $RANDOM_MB MiB of incompressible data"
    # openssl ends on SIGPIPE when head has enough; the size is checked instead of the status.
    (openssl enc -aes-128-ctr -nosalt -pass pass:cairn-check-bench -pbkdf2 -in /dev/zero 2>/dev/null \
        | head -c $((RANDOM_MB << 20)) > "$DATA/random.bin") || true
    [ "$(stat -c %s "$DATA/random.bin")" = $((RANDOM_MB << 20)) ] || die "could not generate $DATA/random.bin"
fi
if [ ! -s "$DATA/dump.sql" ] || [ "$(stat -c %s "$DATA/dump.sql")" -lt $((SQL_MB << 20)) ]; then
    say "generating $SQL_MB MiB of SQL-like text"
    awk -v limit=$((SQL_MB << 20)) 'BEGIN {
        srand(42); n = 0
        print "COPY public.pgbench_accounts (aid, bid, abalance, filler) FROM stdin;"
        for (i = 1; n < limit; i++) {
            line = sprintf("INSERT INTO accounts VALUES (%d, %d, %d, '\''%08x%08x%08x%08x'\'');", i, int(rand() * 1000), int(rand() * 2000000) - 1000000, rand() * 4294967295, rand() * 4294967295, rand() * 65535, rand() * 255)
            print line; n += length(line) + 1
        }
    }' > "$DATA/dump.sql"
fi
DATA_BYTES=$(du -sb "$DATA" | cut -f1)

# ---------------------------------------------------------------- repositories
repo_bytes() { du -sb "$1" | cut -f1; }
if want cairn && [ ! -f "$REPOS/cairn/config" ]; then
    say "cairn: init + backup"
    rm -rf "$REPOS/cairn" "$WORK/cairn-cache"
    "$CAIRN" -r "$REPOS/cairn" --cache-dir "$WORK/cairn-cache" init --quiet
    "$CAIRN" -r "$REPOS/cairn" --cache-dir "$WORK/cairn-cache" backup --quiet "$DATA"
fi
if want restic && [ ! -f "$REPOS/restic/config" ]; then
    say "restic: init + backup"
    rm -rf "$REPOS/restic"
    restic -r "$REPOS/restic" init >"$LOGS/restic-init.log"
    restic -r "$REPOS/restic" backup --quiet "$DATA" >"$LOGS/restic-backup.log"
fi
if want borg && [ ! -f "$REPOS/borg/config" ]; then
    say "borg: init + create"
    rm -rf "$REPOS/borg"
    borg init --encryption=repokey-blake2 "$REPOS/borg" 2>"$LOGS/borg-init.log"
    borg create "$REPOS/borg::one" "$DATA" 2>"$LOGS/borg-create.log"
fi

# ---------------------------------------------------------------- checks
command_for() {
    case "$1" in
        cairn) echo "$CAIRN -r $REPOS/cairn --cache-dir $WORK/cairn-cache check --read-data --quiet" ;;
        restic) echo "restic -r $REPOS/restic check --read-data" ;;
        borg) echo "borg check --verify-data $REPOS/borg" ;;
    esac
}

prepare() { # mode repo
    if [ "$1" = cold ]; then
        sync
        echo 3 > /proc/sys/vm/drop_caches
    else
        find "$2" -type f -exec cat {} + > /dev/null
    fi
}

# Seconds from /usr/bin/time's h:mm:ss or m:ss.ss.
secs() { awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }'; }

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$RESULTS/check-$STAMP.md
{
    echo "# check --read-data / --verify-data, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM."
    echo "Data: $((DATA_BYTES >> 20)) MiB ($RANDOM_MB MiB incompressible + $SQL_MB MiB SQL-like text)."
    echo "Versions: cairn $("$CAIRN" --version 2>/dev/null | awk '{print $2}'), $(restic version 2>/dev/null | awk '{print $1, $2}'), $(borg --version 2>/dev/null)."
    echo
    echo "| tool | cache | repo MiB | wall s | user s | sys s | CPU % | peak RSS MiB | MiB/s of repo | load1 before | exit |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} | tee "$OUT"
modes=$([ "$MODE" = both ] && echo "cold warm" || echo "$MODE")
for mode in $modes; do
    for tool in cairn restic borg; do
        want "$tool" || continue
        for run in $(seq 1 "$RUNS"); do
            repo=$REPOS/$tool
            bytes=$(repo_bytes "$repo")
            prepare "$mode" "$repo"
            load=$(load1)
            log=$LOGS/$tool-$mode-$run-$STAMP.log
            set +e
            # shellcheck disable=SC2046
            /usr/bin/time -v -o "$log.time" $(command_for "$tool") >"$log" 2>&1
            code=$?
            set -e
            wall=$(grep 'Elapsed (wall clock)' "$log.time" | awk '{print $NF}' | secs)
            user=$(awk -F': ' '/User time/ {print $2}' "$log.time")
            sys=$(awk -F': ' '/System time/ {print $2}' "$log.time")
            cpu=$(awk -F': ' '/Percent of CPU/ {print $2}' "$log.time")
            rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$log.time")
            rate=$(awk -v b="$bytes" -v w="$wall" 'BEGIN { printf "%.0f", (w > 0) ? b / 1048576 / w : 0 }')
            echo "| $tool | $mode | $((bytes >> 20)) | $wall | $user | $sys | $cpu | $rss | $rate | $load | $code |" | tee -a "$OUT"
        done
    done
done
echo | tee -a "$OUT"
echo "Logs: $LOGS (*-$STAMP.log, *.time). Load after: $(cut -d' ' -f1-3 /proc/loadavg)." | tee -a "$OUT"
say "results in $OUT"
