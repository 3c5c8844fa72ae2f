#!/usr/bin/env bash
# `cairn mount` side by side with `restic mount` on the same data, in one run: sequential read of a
# large dump through the mount (and `cairn dump` / `restic dump` of the same file as the baseline),
# 4 KiB reads at random offsets (p50/p99 latency, cold: a fresh mount; warm: the same offsets again),
# `ls -lR` and `diff -r` of a mounted tree of small files, and the mount's peak RSS after it served
# the whole dump.
#
# usage: benches/mount.sh [--dump-mib N] [--tree-files N] [--reads N] [WORKDIR]
#   WORKDIR defaults to /var/tmp/cairn-mount-bench; its data/ folder is generated once and reused
#   (and the repositories made again when it changes).
#   --dump-mib N    size of the generated SQL-like dump (default 300)
#   --tree-files N  files in the generated tree (default 10000)
#   --reads N       random 4 KiB reads per pass (default 2000)
# environment: CAIRN (binary; default target/release/cairn, else target/debug/cairn of this checkout).
# "Cold" means a freshly mounted file system (no mount-level or kernel cache of the mounted file);
# the repositories' pack files may still be in the host's page cache for both tools alike (the page
# cache is not dropped: the machine is shared).
# Results: a Markdown table on standard output and in WORKDIR/results.md; `uptime` at the start and end.
set -euo pipefail

DUMP_MIB=300
TREE_FILES=10000
READS=2000
WORK=
while (($#)); do
    case "$1" in
        --dump-mib) DUMP_MIB=$2; shift 2 ;;
        --tree-files) TREE_FILES=$2; shift 2 ;;
        --reads) READS=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "mount.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) WORK=$1; shift ;;
    esac
done
WORK=${WORK:-/var/tmp/cairn-mount-bench}
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${CAIRN:-}" ]; then
    CAIRN=$HERE/target/release/cairn
    [ -x "$CAIRN" ] || CAIRN=$HERE/target/debug/cairn
fi
[ -x "$CAIRN" ] || { echo "mount.sh: no cairn binary at $CAIRN (cargo build -p cairn-cli --release)" >&2; exit 1; }
command -v restic >/dev/null || { echo "mount.sh: restic is missing (apt-get install restic)" >&2; exit 1; }
command -v fusermount3 >/dev/null || { echo "mount.sh: fusermount3 is missing (apt-get install fuse3)" >&2; exit 1; }

export CAIRN_PASSWORD=bench-password RESTIC_PASSWORD=bench-password
export CAIRN_CACHE_DIR=$WORK/cache/cairn RESTIC_CACHE_DIR=$WORK/cache/restic
DATA=$WORK/data
mkdir -p "$DATA" "$WORK/mnt/cairn" "$WORK/mnt/restic"

# --- data (once)
if [ ! -f "$DATA/dump.sql" ] || [ "$(stat -c %s "$DATA/dump.sql")" -lt $((DUMP_MIB * 1024 * 1024)) ]; then
    echo "== generating a ${DUMP_MIB} MiB dump" >&2
    rm -rf "$WORK/repos" "$WORK/cache"
    python3 - "$DATA/dump.sql" "$DUMP_MIB" <<'EOF'
import hashlib, random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
with open(path, "w") as f:
    f.write("COPY public.accounts (aid, bid, abalance, filler) FROM stdin;\n")
    n, target = 0, mib * 1024 * 1024
    while f.tell() < target:
        rows = []
        for _ in range(10000):
            n += 1
            rows.append(f"{n}\t{n // 100000 + 1}\t{rnd.randint(-5000, 5000)}\t{hashlib.md5(str(n).encode()).hexdigest() * 2}{rnd.getrandbits(64):x}\n")
        f.write("".join(rows))
    f.write("\\.\n")
EOF
fi
if [ ! -d "$DATA/tree" ] || [ "$(find "$DATA/tree" -type f | wc -l)" -ne "$TREE_FILES" ]; then
    echo "== generating a tree of $TREE_FILES files" >&2
    rm -rf "$WORK/repos" "$WORK/cache"
    rm -rf "$DATA/tree"
    python3 - "$DATA/tree" "$TREE_FILES" <<'EOF'
import os, random, sys
root, files = sys.argv[1], int(sys.argv[2])
rnd = random.Random(2)
for i in range(files):
    d = os.path.join(root, f"d{i % 40:02}", f"e{(i // 40) % 25:02}")
    os.makedirs(d, exist_ok=True)
    size = int(rnd.paretovariate(1.2) * 600) % 200000
    with open(os.path.join(d, f"f{i:06}.txt"), "wb") as f:
        f.write(rnd.randbytes(size // 2) + b"x" * (size - size // 2))
EOF
fi

# --- repositories (once)
if [ ! -d "$WORK/repos/cairn" ]; then
    echo "== backing up into fresh repositories" >&2
    "$CAIRN" -r "$WORK/repos/cairn" init --quiet
    "$CAIRN" -r "$WORK/repos/cairn" backup --quiet "$DATA"
    restic -r "$WORK/repos/restic" init --quiet
    restic -r "$WORK/repos/restic" backup --quiet "$DATA"
fi

UPTIME_START=$(uptime)
MOUNT_PID=
unmount() {
    local at=$1
    if mountpoint -q "$at"; then fusermount3 -u "$at" 2>/dev/null || umount -l "$at" || true; fi
    if [ -n "$MOUNT_PID" ]; then wait "$MOUNT_PID" 2>/dev/null || true; MOUNT_PID=; fi
}
cleanup() { unmount "$WORK/mnt/cairn"; unmount "$WORK/mnt/restic"; }
trap cleanup EXIT

# mount TOOL: starts a fresh mount of TOOL's repository in the background, waits until it answers.
mount_tool() {
    local tool=$1 at=$WORK/mnt/$1
    unmount "$at"
    if [ "$tool" = cairn ]; then
        "$CAIRN" -r "$WORK/repos/cairn" mount --quiet "$at" &
    else
        restic -r "$WORK/repos/restic" mount --no-lock "$at" >/dev/null 2>&1 &
    fi
    MOUNT_PID=$!
    for _ in $(seq 600); do
        [ -d "$at/snapshots/latest" ] && return 0
        sleep 0.1
    done
    echo "mount.sh: the $tool mount did not come up" >&2
    exit 1
}

seconds() { python3 -c 'import sys,time; print(f"{time.monotonic():.6f}")'; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
mbps() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6 / float(sys.argv[2]):.0f}')" "$1" "$2"; }

# The dump's and the tree's paths inside a snapshot folder.
REL_DUMP=${DATA#/}/dump.sql
REL_TREE=${DATA#/}/tree
DUMP_BYTES=$(stat -c %s "$DATA/dump.sql")
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 |"); }

declare -A SEQ RSS P50C P99C P50W P99W LS DIFF
for tool in cairn restic; do
    echo "== $tool: sequential read" >&2
    mount_tool "$tool"
    t0=$(seconds); cat "$WORK/mnt/$tool/snapshots/latest/$REL_DUMP" >/dev/null; t1=$(seconds)
    SEQ[$tool]=$(elapsed "$t0" "$t1")
    RSS[$tool]=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$MOUNT_PID/status")
    cmp -s "$WORK/mnt/$tool/snapshots/latest/$REL_DUMP" "$DATA/dump.sql" || { echo "mount.sh: $tool served wrong bytes" >&2; exit 1; }

    echo "== $tool: random 4 KiB reads" >&2
    mount_tool "$tool"
    read -r c50 c99 w50 w99 < <(python3 - "$WORK/mnt/$tool/snapshots/latest/$REL_DUMP" "$READS" <<'EOF'
import os, random, sys, time
path, n = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
rnd = random.Random(3)
offsets = [rnd.randrange(0, size - 4096) for _ in range(n)]
def run():
    times = []
    for off in offsets:
        t = time.perf_counter_ns()
        if len(os.pread(fd, 4096, off)) != 4096:
            sys.exit("short read")
        times.append(time.perf_counter_ns() - t)
    times.sort()
    return times[len(times) // 2] / 1e3, times[len(times) * 99 // 100] / 1e3
cold = run()
warm = run()
print(f"{cold[0]:.0f} {cold[1]:.0f} {warm[0]:.0f} {warm[1]:.0f}")
EOF
)
    P50C[$tool]=$c50; P99C[$tool]=$c99; P50W[$tool]=$w50; P99W[$tool]=$w99

    echo "== $tool: ls -lR and diff -r of the tree" >&2
    mount_tool "$tool"
    t0=$(seconds); ls -lR "$WORK/mnt/$tool/snapshots/latest/$REL_TREE" >/dev/null; t1=$(seconds)
    LS[$tool]=$(elapsed "$t0" "$t1")
    t0=$(seconds); diff -r "$DATA/tree" "$WORK/mnt/$tool/snapshots/latest/$REL_TREE" >/dev/null; t1=$(seconds)
    DIFF[$tool]=$(elapsed "$t0" "$t1")
    unmount "$WORK/mnt/$tool"
done

echo "== dump baselines" >&2
t0=$(seconds); "$CAIRN" -r "$WORK/repos/cairn" dump --quiet latest "/$REL_DUMP" >/dev/null; t1=$(seconds)
CAIRN_DUMP=$(elapsed "$t0" "$t1")
t0=$(seconds); restic -r "$WORK/repos/restic" dump --no-lock --quiet latest "/$REL_DUMP" >/dev/null; t1=$(seconds)
RESTIC_DUMP=$(elapsed "$t0" "$t1")
UPTIME_END=$(uptime)

{
    echo "cairn: $CAIRN; $(restic version)"
    echo "data: dump $DUMP_BYTES bytes, tree of $TREE_FILES files; $READS random reads per pass"
    echo "load at start: $UPTIME_START"
    echo "load at end:   $UPTIME_END"
    echo
    echo "| measurement | cairn | restic |"
    echo "|---|---|---|"
    echo "| sequential read through the mount, s (MB/s) | ${SEQ[cairn]} ($(mbps "$DUMP_BYTES" "${SEQ[cairn]}")) | ${SEQ[restic]} ($(mbps "$DUMP_BYTES" "${SEQ[restic]}")) |"
    echo "| \`dump\` of the same file to /dev/null, s (MB/s) | $CAIRN_DUMP ($(mbps "$DUMP_BYTES" "$CAIRN_DUMP")) | $RESTIC_DUMP ($(mbps "$DUMP_BYTES" "$RESTIC_DUMP")) |"
    echo "| 4 KiB random read, cold, p50 / p99 µs | ${P50C[cairn]} / ${P99C[cairn]} | ${P50C[restic]} / ${P99C[restic]} |"
    echo "| 4 KiB random read, warm, p50 / p99 µs | ${P50W[cairn]} / ${P99W[cairn]} | ${P50W[restic]} / ${P99W[restic]} |"
    echo "| \`ls -lR\` of the tree (fresh mount), s | ${LS[cairn]} | ${LS[restic]} |"
    echo "| \`diff -r\` of the tree against the source, s | ${DIFF[cairn]} | ${DIFF[restic]} |"
    echo "| peak RSS of the mount after reading the dump, MiB | ${RSS[cairn]} | ${RSS[restic]} |"
} | tee "$WORK/results.md"
