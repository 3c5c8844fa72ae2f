#!/usr/bin/env bash
# A/B timing of one step for two or more cairn binaries, runs interleaved (A B A B ...) so that
# both see the same drift of the machine, page cache dropped before every run; prints each run and
# the median wall time per binary. Uses the data and cairn repository of benches/compare.sh (run it
# once first, with at least --tools cairn).
#
# usage: benches/ab.sh [--runs N] [--work DIR] STEP BINARY...      (defaults: 5 runs, /var/tmp/cairn-bench)
#   STEP  first      back up dump-000.sql into a fresh repository (created before the timer starts)
#         restore    restore the newest snapshot of the dump from WORK/repos/cairn
#         unchanged  back up the small-file tree again into WORK/repos/cairn (adds a snapshot)
# environment: CAIRN_PASSWORD (default: the throwaway password compare.sh uses), WARM_MIB (memory
#   warmed before each run as in compare.sh, default 3072; 0 to skip).
set -euo pipefail

RUNS=5
WORK=/var/tmp/cairn-bench
while (($#)); do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "ab.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) break ;;
    esac
done
(($# >= 2)) || { echo "ab.sh: need a step and at least one binary (see --help)" >&2; exit 2; }
STEP=$1; shift
BINARIES=("$@")
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-bench-password}
WARM_MIB=${WARM_MIB:-3072}
REPO=$WORK/repos/cairn
CACHE=$WORK/cache/cairn
SCRATCH=$WORK/ab
case $STEP in
    first) [ -f "$WORK/data/dump-000.sql" ] || { echo "ab.sh: no $WORK/data/dump-000.sql; run benches/compare.sh first" >&2; exit 1; } ;;
    restore|unchanged) [ -d "$REPO" ] || { echo "ab.sh: no repository $REPO; run benches/compare.sh first" >&2; exit 1; } ;;
    *) echo "ab.sh: unknown step $STEP (first, restore or unchanged)" >&2; exit 2 ;;
esac
for b in "${BINARIES[@]}"; do [ -x "$b" ] || { echo "ab.sh: $b is not executable" >&2; exit 1; }; done
[ -w /proc/sys/vm/drop_caches ] || { echo "ab.sh: dropping the page cache needs root" >&2; exit 1; }

prepare() {
    rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"
    if [ "$STEP" = first ]; then "$1" -r "$SCRATCH/repo" --cache-dir "$SCRATCH/cache" -q init; fi
    sync; echo 3 >/proc/sys/vm/drop_caches
    if [ "$WARM_MIB" -gt 0 ] && [ -w /dev/shm ]; then
        head -c $((WARM_MIB << 20)) /dev/zero >/dev/shm/cairn-ab-warm 2>/dev/null || true
        rm -f /dev/shm/cairn-ab-warm
    fi
}

run() {
    local bin=$1 snapshot
    case $STEP in
        first) set -- "$bin" -r "$SCRATCH/repo" --cache-dir "$SCRATCH/cache" -q backup "$WORK/data/dump-000.sql" ;;
        restore)
            snapshot=$("$bin" -r "$REPO" --cache-dir "$CACHE" --json snapshots |
                jq -r '[.[] | select(.paths[0] | endswith("/db.sql"))] | last | .id')
            set -- "$bin" -r "$REPO" --cache-dir "$CACHE" -q restore "$snapshot" --target "$SCRATCH/restore" ;;
        unchanged) set -- "$bin" -r "$REPO" --cache-dir "$CACHE" -q backup "$WORK/data/tree" ;;
    esac
    prepare "$bin"
    /usr/bin/time -f '%e %U %S %M' -o "$SCRATCH/time.out" "$@" >/dev/null
    cat "$SCRATCH/time.out"
}

declare -A WALLS
for ((i = 1; i <= RUNS; i++)); do
    for b in "${BINARIES[@]}"; do
        read -r wall user sys rss < <(run "$b")
        printf '%-40s run %d: wall %5.2f s  user %5.2f s  sys %5.2f s  rss %4d MB\n' "$b" "$i" "$wall" "$user" "$sys" $((rss / 1024))
        WALLS[$b]="${WALLS[$b]:-} $wall"
    done
done
rm -rf "$SCRATCH"
for b in "${BINARIES[@]}"; do
    # shellcheck disable=SC2086
    printf '%-40s median wall %s s over %d runs\n' "$b" "$(printf '%s\n' ${WALLS[$b]} | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')" "$RUNS"
done
