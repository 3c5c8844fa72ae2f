#!/usr/bin/env bash
# Stress loop for prune beside running backups (what tests/retention.rs checks once per CI run):
# two folders backed up six times each in a loop while `forget --keep-last 2 --prune` runs twelve
# times, repeated RUNS times in LOOPS loops at once; any failing backup or prune stops its loop
# and leaves its folder (repository, cache, err.log) for inspection. Exits non-zero on a failure.
#
#   scripts/prune_race.sh [RUNS] [LOOPS]      defaults: 20 runs, 3 loops; CAIRN overrides the binary
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
loops=${2:-3}
[ -n "${CAIRN:-}" ] || cargo build --release --locked --quiet -p cairn-cli
cairn=${CAIRN:-$PWD/target/release/cairn}
work=$(mktemp -d /var/tmp/cairn-prune-race.XXXXXX)

one_run() {
  local dir=$1
  mkdir -p "$dir/src0" "$dir/src1"
  export CAIRN_PASSWORD=race CAIRN_REPOSITORY=$dir/repo CAIRN_CACHE_DIR=$dir/cache
  "$cairn" init --quiet --kdf-memory-kib 64 --kdf-time 1 || return 1
  for i in 0 1; do
    (
      for round in 0 1 2 3 4 5; do
        step=$((100 * (i + 1) + round))
        for f in a b c; do
          echo "$step $f $RANDOM" >"$dir/src$i/$f"
          head -c $((RANDOM * 3)) /dev/urandom >"$dir/src$i/big$f"
        done
        "$cairn" backup --quiet --tag "step-$step" "$dir/src$i" 2>>"$dir/err.log" || echo "backup $step failed" >>"$dir/err.log"
      done
    ) &
  done
  (
    for _ in $(seq 12); do
      sleep "0.0$((RANDOM % 30))"
      "$cairn" forget --keep-last 2 --prune --quiet 2>>"$dir/err.log" || echo "prune failed" >>"$dir/err.log"
    done
  ) &
  wait
  "$cairn" check --quiet 2>>"$dir/err.log" || echo "check failed" >>"$dir/err.log"
  [ ! -s "$dir/err.log" ]
}

loop() {
  local n
  for n in $(seq "$runs"); do
    if ! one_run "$work/loop$1-run$n"; then
      echo "loop $1 run $n failed; see $work/loop$1-run$n/err.log:" >&2
      cat "$work/loop$1-run$n/err.log" >&2
      return 1
    fi
    rm -rf "$work/loop$1-run$n"
  done
}

pids=()
for l in $(seq "$loops"); do loop "$l" & pids+=($!); done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
if [ "$status" = 0 ]; then
  echo "$((runs * loops)) runs, no failure"
  rmdir "$work" 2>/dev/null || true
fi
exit "$status"
