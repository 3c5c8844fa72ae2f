#!/usr/bin/env bash
# Memory of `check` on large repositories: two cairn builds side by side (BEFORE and AFTER, e.g.
# main's binary and this checkout's) on the same generated repositories, for `check` and
# `check --read-data-subset 1%`, each under /usr/bin/time (wall, CPU-s, peak RSS), with the peak
# size of the unnamed scratch files the process holds open (sampled from /proc/PID/fd every 0.2 s).
#
# usage: benches/check_scale.sh [--blobs LIST] [--before BIN] [--after BIN] [--runs N] [WORKDIR]
#   --blobs LIST   comma-separated repository sizes in data blobs (default 1000000,10000000)
#   --before BIN   the first build (default /work/main/target/release/cairn, else skipped)
#   --after BIN    the second build (default target/release/cairn of this checkout, built)
#   --runs N       runs of each step per build; each is a row (default 1)
#   WORKDIR        default /var/tmp/cairn-check-scale
# Each size's repository is WORKDIR/repo-N, made once by `cairn init` and the generator
# (benches/examples/gen_repo.rs; 10M blobs take ~100 CPU-s and ~4.8 GB) and kept for later runs
# (delete WORKDIR to free the space). Each build gets its own cache folder, warmed by one `check`
# before the measured runs. Results: a Markdown table on standard output and in WORKDIR/results/,
# raw rows in a TSV beside it, with the 1-minute load average at each step.
set -euo pipefail

BLOBS=1000000,10000000
BEFORE=/work/main/target/release/cairn
AFTER=
RUNS=1
WORK=
while (($#)); do
    case "$1" in
        --blobs) BLOBS=$2; shift 2 ;;
        --before) BEFORE=$2; shift 2 ;;
        --after) AFTER=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "check_scale.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) WORK=$1; shift ;;
    esac
done
WORK=${WORK:-/var/tmp/cairn-check-scale}
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
if [ -z "$AFTER" ]; then
    cargo build --release --locked --quiet -p cairn-cli
    AFTER=$PWD/target/release/cairn
fi
cargo build --release --locked --quiet -p cairn-benches --example gen_repo
GEN_REPO=$PWD/target/release/examples/gen_repo
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-scale-bench}
mkdir -p "$WORK/results"
stamp=$(date -u +%Y%m%d-%H%M%S)
TSV=$WORK/results/check-scale-$stamp.tsv
printf 'blobs\tbuild\tstep\twall_s\tcpu_s\tpeak_rss_mib\tscratch_mib\tload1\n' > "$TSV"
say() { echo "== $*" >&2; }

builds=()
[ -x "$BEFORE" ] && builds+=("before=$BEFORE")
builds+=("after=$AFTER")

# Largest total size of the deleted files PID holds open, in bytes, until PID ends.
scratch_peak() {
    local pid=$1 peak=0 sum
    while kill -0 "$pid" 2>/dev/null; do
        sum=0
        for fd in /proc/"$pid"/fd/*; do
            [[ $(readlink "$fd" 2>/dev/null) == *"(deleted)" ]] || continue
            sum=$((sum + $(stat -L -c %s "$fd" 2>/dev/null || echo 0)))
        done 2>/dev/null
        ((sum > peak)) && peak=$sum
        sleep 0.2
    done
    echo "$peak"
}

measure() {
    local n=$1 build=$2 step=$3; shift 3
    local load; load=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.out" "$@" > "$WORK/last.out" &
    local pid=$!
    sleep 0.05
    local child; child=$(pgrep -P "$pid" | head -n1 || true)
    local peak=0
    [ -n "$child" ] && peak=$(scratch_peak "$child")
    wait "$pid" || say "WARNING: $build $step exited with $?"
    read -r wall user sys rss < "$WORK/time.out"
    local cpu; cpu=$(echo "$user + $sys" | bc)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$build" "$step" "$wall" "$cpu" "$((rss / 1024))" \
        "$((peak / 1048576))" "$load" >> "$TSV"
    say "$n blobs, $build, $step: wall $wall s, cpu $cpu s, peak RSS $((rss / 1024)) MiB, scratch $((peak / 1048576)) MiB (load $load)"
}

IFS=, read -r -a SIZES <<< "$BLOBS"
for n in "${SIZES[@]}"; do
    repo=$WORK/repo-$n
    if [ ! -f "$repo.generated" ]; then
        rm -rf "$repo"
        "$AFTER" init --quiet -r "$repo"
        say "generating $n blobs (df: $(df -h --output=avail "$WORK" | tail -n1))"
        "$GEN_REPO" "$repo" "$n"
        touch "$repo.generated"
    fi
    for b in "${builds[@]}"; do
        name=${b%%=*} bin=${b#*=}
        export CAIRN_REPOSITORY=$repo CAIRN_CACHE_DIR=$WORK/cache-$n-$name
        "$bin" check --quiet > /dev/null
        for _ in $(seq "$RUNS"); do
            measure "$n" "$name" check "$bin" check --quiet
            measure "$n" "$name" "check subset 1%" "$bin" check --quiet --read-data-subset 1%
        done
    done
done

python3 - "$TSV" <<'PY' | tee "$WORK/results/check-scale-$stamp.md"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("| blobs | build | step | wall s | CPU s | peak RSS MiB | scratch files MiB | load |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    print(f'| {int(r["blobs"])/1e6:g}M | {r["build"]} | {r["step"]} | {r["wall_s"]} | {float(r["cpu_s"]):.1f} '
          f'| {r["peak_rss_mib"]} | {r["scratch_mib"]} | {r["load1"]} |')
PY
