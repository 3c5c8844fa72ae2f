#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (one per decoder of the format crate) for a bounded time each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 60 seconds, every target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only compiler flags
# (-Z sanitizer=address, sancov passes); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Set CAIRN_FUZZ_SANITIZER=none to build without AddressSanitizer (faster, catches fewer bugs).
# Corpora grow in fuzz/corpus/<target>; a crash is saved under fuzz/artifacts/<target>/ and can be
# replayed with `cargo fuzz run <target> <file>` (with RUSTC_BOOTSTRAP=1). Exits non-zero on a crash.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
if [ $# -gt 0 ]; then shift; fi
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed; run: cargo install cargo-fuzz" >&2
  exit 1
fi

export RUSTC_BOOTSTRAP=1
sanitizer=(--sanitizer "${CAIRN_FUZZ_SANITIZER:-address}")

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

# Build every target first, so that the time budget below is spent fuzzing.
cargo fuzz build "${sanitizer[@]}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s"
  mkdir -p "corpus/$target"
  status=0
  cargo fuzz run "${sanitizer[@]}" "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "!! $target failed (exit $status); the input is under fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
done
echo "== all ${#targets[@]} targets ran ${seconds}s each without a crash"
