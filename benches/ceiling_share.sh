#!/usr/bin/env bash
# Each large-file step of cairn as a share of this machine's ceiling, measured in the same run, with
# restic 0.14 (and borg 1.2, when installed) beside it on the same input.
#
# usage: benches/ceiling_share.sh [--runs N] [--baseline BIN] FIRST [NEXT...] [-- WORKDIR]
#   FIRST    a large file (e.g. a pg_dump) backed up with `--stdin` as the first backup
#   NEXT     later versions of it (e.g. the next hours' dumps), each backed up after the one before
#   --runs N repeat the whole comparison N times (fresh repositories each time; default 1)
#   --baseline BIN  also back up every input with another cairn binary (before/after a change),
#            into its own repository, right after cairn and before restic, so both see the same load
#   WORKDIR  repositories, caches and restore targets (default /var/tmp/cairn-ceiling-share)
# environment: CAIRN (default target/release/cairn of this checkout, built if missing).
#
# The ceiling is `cargo run --release -p cairn-benches --example ceiling` on FIRST: the backup data
# path (read → chunk → hash → zstd-1 → seal) and the restore data path (read → decrypt → decompress →
# hash → write) on every core with nothing else in the way. It is run right before and right after
# each comparison; the share of a step is (ceiling wall for the step's bytes) / (the step's wall),
# with the mean of the two ceiling runs; the same with CPU-seconds (which depend little on other load
# on the machine) is the second share column. The third takes off the wall time of `cairn snapshots`
# (key derivation, cache, listing), which every command pays before its data path and the ceiling
# does not. The subset check is compared with a quarter of the data. A later version mostly deduplicates, so its backup can pass
# 100% of a ceiling that compresses every byte. The checks run while the repository holds FIRST only. check --read-data writes nothing, so the restore path is a
# generous ceiling for it (its write stage is about a fifth of that path). The page cache is warm (the
# inputs are read once before), every tool writes into fresh repositories on the same disk, and
# `/usr/bin/time` gives wall, CPU (user + system) and peak RSS.
set -euo pipefail

runs=1 inputs=() work=/var/tmp/cairn-ceiling-share baseline=
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --baseline) baseline=$(realpath "$2"); shift 2 ;;
        --) work=$2; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) inputs+=("$(realpath "$1")"); shift ;;
    esac
done
[ ${#inputs[@]} -ge 1 ] || { sed -n '2,25p' "$0" >&2; exit 2; }
cd "$(dirname "$0")/.."
first=${inputs[0]}

CAIRN=${CAIRN:-$PWD/target/release/cairn}
[ -x "$CAIRN" ] || cargo build --release --locked --quiet -p cairn-cli
cargo build --release --locked --quiet -p cairn-benches --example ceiling
ceiling=$PWD/target/release/examples/ceiling
command -v restic >/dev/null || { echo "restic is not installed" >&2; exit 1; }
# borg (Debian package borgbackup) runs with its defaults: lz4, repokey encryption (blake2 without SHA-NI).
borg=$(command -v borg || true)
[ -n "$borg" ] || echo "borg is not installed: its column is left out" >&2
# shellcheck source=tools_env.sh
. benches/tools_env.sh
export BORG_BASE_DIR=$work/borg-base
mkdir -p "$work"
cat "${inputs[@]}" >/dev/null

size() { stat -c %s "$1"; }
first_bytes=$(size "$first")
mib=$(((first_bytes + (1 << 20) - 1) >> 20))

# run_ceiling: prints "BACKUP_WALL RESTORE_WALL BYTES BACKUP_CPU RESTORE_CPU" for FIRST.
run_ceiling() {
    "$ceiling" "$mib" "$first" "$work" | awk '
        /^input:/ { mb = $2 }
        /^  backup / { b = $(NF - 3); bc = $(NF - 1) }
        /^  restore / { r = $(NF - 3); rc = $(NF - 1) }
        END { printf "%s %s %d %s %s\n", b, r, mb * 1e6, bc, rc }'
}

# measure NAME BYTES COMMAND...: runs COMMAND under /usr/bin/time, appends "NAME BYTES WALL CPU RSS_MB".
measure() {
    local name=$1 bytes=$2; shift 2
    /usr/bin/time -f '%e %U %S %M' -o "$work/time.out" "$@" >"$work/$name.log" 2>&1 \
        || { tail -n 20 "$work/$name.log" >&2; echo "$name failed" >&2; exit 1; }
    read -r wall user sys rss < "$work/time.out"
    echo "$name $bytes $wall $(echo "$user + $sys" | bc) $((rss / 1024))" >>"$rows"
    printf '%-22s wall %6.2f s  cpu %6.2f s  rss %4d MB  load %s\n' "$name" "$wall" "$(echo "$user + $sys" | bc)" \
        "$((rss / 1024))" "$(cut -d' ' -f1 /proc/loadavg)" >&2
}

for run in $(seq 1 "$runs"); do
    rows=$work/rows-$run
    : >"$rows"
    rm -rf "$work/cairn" "$work/restic" "$work/borg" "$work/borg-base" "$work/cairn-cache" "$work/restic-cache" "$work/target-"* \
        "$work/base" "$work/base-cache"
    read -r cb1 cr1 _ cbc1 crc1 < <(run_ceiling)
    "$CAIRN" -q -r "$work/cairn" --cache-dir "$work/cairn-cache" init >/dev/null
    restic -q -r "$work/restic" --cache-dir "$work/restic-cache" init --repository-version 2 >/dev/null
    [ -z "$borg" ] || borg init -e "$BORG_ENCRYPTION" "$work/borg" 2>/dev/null
    c=("$CAIRN" -q -r "$work/cairn" --cache-dir "$work/cairn-cache")
    r=(restic -q -r "$work/restic" --cache-dir "$work/restic-cache")
    if [ -n "$baseline" ]; then
        "$baseline" -q -r "$work/base" --cache-dir "$work/base-cache" init >/dev/null
        b=("$baseline" -q -r "$work/base" --cache-dir "$work/base-cache")
    fi
    i=0
    for input in "${inputs[@]}"; do
        name=$([ $i = 0 ] && echo first || echo "next-$i")
        measure "cairn-backup-$name" "$(size "$input")" sh -c '"$@" < "$0"' "$input" "${c[@]}" backup --stdin --stdin-filename dump.sql
        if [ -n "$baseline" ]; then
            measure "baseline-backup-$name" "$(size "$input")" sh -c '"$@" < "$0"' "$input" "${b[@]}" backup --stdin --stdin-filename dump.sql
        fi
        measure "restic-backup-$name" "$(size "$input")" sh -c '"$@" < "$0"' "$input" "${r[@]}" backup --stdin --stdin-filename dump.sql
        [ -z "$borg" ] || measure "borg-backup-$name" "$(size "$input")" sh -c 'borg create --compression lz4 --stdin-name dump.sql "$1" - < "$0"' "$input" "$work/borg::$name"
        if [ $i = 0 ]; then
            # Checked while the repository holds FIRST only, so the bytes read are FIRST's.
            measure cairn-check-read-data "$first_bytes" "${c[@]}" check --read-data
            measure restic-check-read-data "$first_bytes" "${r[@]}" check --read-data
            [ -z "$borg" ] || measure borg-check-read-data "$first_bytes" borg check --verify-data "$work/borg"
            measure cairn-check-subset-25% "$first_bytes" "${c[@]}" check --read-data-subset 25%
        fi
        i=$((i + 1))
    done
    last=${inputs[-1]}
    # What every command pays before its data path: the key derivation (argon2id with the key
    # file's parameters), opening the cache and listing the repository. The ceiling has none of it.
    measure cairn-open 0 "${c[@]}" snapshots
    measure restic-open 0 "${r[@]}" snapshots
    [ -z "$borg" ] || measure borg-open 0 borg list "$work/borg"
    measure cairn-restore "$(size "$last")" "${c[@]}" restore latest --target "$work/target-cairn"
    measure restic-restore "$(size "$last")" "${r[@]}" restore latest --target "$work/target-restic"
    if [ -n "$borg" ]; then
        mkdir -p "$work/target-borg"
        measure borg-restore "$(size "$last")" sh -c 'cd "$0" && borg extract "$1"' "$work/target-borg" "$work/borg::$name"
        cmp "$work/target-borg/dump.sql" "$last"
    fi
    cmp "$work/target-cairn/dump.sql" "$last"
    cmp "$work/target-restic/dump.sql" "$last"
    measure cairn-dump "$(size "$last")" sh -c '"$@" > /dev/null' - "${c[@]}" dump latest /dump.sql
    measure restic-dump "$(size "$last")" sh -c '"$@" > /dev/null' - "${r[@]}" dump latest /dump.sql
    [ -z "$borg" ] || measure borg-dump "$(size "$last")" sh -c 'borg extract --stdout "$0" dump.sql > /dev/null' "$work/borg::$name"
    read -r cb2 cr2 cbytes cbc2 crc2 < <(run_ceiling)
    echo "ceiling $cbytes $cb1 $cb2 $cr1 $cr2 $cbc1 $cbc2 $crc1 $crc2" >>"$rows"

    # The table: cairn's steps with restic's beside them and the share of the ceiling.
    awk -v run="$run" '
        $1 == "ceiling" { cbytes = $2; cb = ($3 + $4) / 2; cr = ($5 + $6) / 2; cbc = ($7 + $8) / 2; crc = ($9 + $10) / 2; next }
        $1 == "cairn-open" { open = $3; openc = $4; next }
        $1 == "restic-open" { ropen = $3; next }
        $1 == "borg-open" { bopen = $3; hasborg = 1; next }
        { n[++k] = $1; bytes[$1] = $2; wall[$1] = $3; cpu[$1] = $4; rss[$1] = $5 }
        END {
            printf "\nrun %d: ceiling backup %.2f s (%.2f CPU-s), restore %.2f s (%.2f CPU-s) for %.0f MB (mean of before and after)\n\n", run, cb, cbc, cr, crc, cbytes / 1e6
            printf "opening the repository (key derivation, cache, listing: `snapshots`): cairn %.2f s (%.2f CPU-s), restic %.2f s", open, openc, ropen
            if (hasborg) printf ", borg %.2f s (`borg list`)", bopen
            printf "\n\n"
            print "| step | cairn wall s / CPU s / RSS MB | restic wall s / CPU s / RSS MB | restic / cairn (wall) | borg wall s / CPU s / RSS MB | borg / cairn (wall) | share of ceiling (wall) | share of ceiling (CPU) | share of ceiling after opening (wall) |"
            print "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
            for (j = 1; j <= k; j++) {
                s = n[j]; if (s !~ /^(cairn|baseline)-/) continue
                step = substr(s, index(s, "-") + 1); other = "restic-" step; b = "borg-" step
                if (s ~ /^baseline-/) { step = step " (baseline)"; other = ""; b = "" }
                part = (step ~ /subset/) ? 0.25 : 1
                ceil = (step ~ /^backup/ ? cb : cr) * bytes[s] * part / cbytes
                ceilc = (step ~ /^backup/ ? cbc : crc) * bytes[s] * part / cbytes
                after = (wall[s] > open) ? sprintf("%.0f%%", 100 * ceil / (wall[s] - open)) : "–"
                share = sprintf("%.0f%% | %.0f%% | %s", 100 * ceil / wall[s], 100 * ceilc / cpu[s], after)
                rcol = (other in wall) ? sprintf("%.2f / %.2f / %d | %.1f×", wall[other], cpu[other], rss[other], wall[other] / wall[s]) : " | "
                bcol = (b in wall) ? sprintf("%.2f / %.2f / %d | %.1f×", wall[b], cpu[b], rss[b], wall[b] / wall[s]) : " | "
                printf "| %s | %.2f / %.2f / %d | %s | %s | %s |\n", step, wall[s], cpu[s], rss[s], rcol, bcol, share
            }
        }' "$rows"
done
