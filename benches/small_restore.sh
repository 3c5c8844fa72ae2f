#!/usr/bin/env bash
# Restore of many small files (and of one large file, so nothing regresses there), cairn, restic and
# borg side by side on the same data, each restore into a fresh target folder.
#
# usage: benches/small_restore.sh [options] [WORKDIR]     WORKDIR defaults to /var/tmp/cairn-small-restore
#   --files LIST     comma-separated file counts of the tiny-file trees (default 100000,200000)
#   --per-folder N   files per folder (default 1000: 100 folders for 100,000 files)
#   --large-mib N    size of the large file (default 512; 0 leaves the large-file restore out)
#   --runs N         restores of each tree per tool, alternating cairn and restic (default 3)
#   --tools LIST     comma-separated subset of cairn,restic,borg (default all three; borg only when
#                    installed: Debian package borgbackup, run with its defaults, lz4)
#   --baseline BIN   also restore with this other cairn binary (tool "cairn-base", same repository
#                    as cairn), in the same rounds: a before/after comparison under the same load
#   --target-dir DIR restore into DIR/target (default WORKDIR/target); e.g. a private ext4 on a loop
#                    device, so that other work's file-system journal does not distort the numbers:
#                    truncate -s 6G IMG && mkfs.ext4 -q -F IMG && mount -o loop IMG DIR
#   --drop-caches    drop the page cache before each restore (needs root); default: warm cache
#   --data-only      generate the data and stop
# environment: CAIRN (cairn binary; default target/release/cairn of this checkout), CAIRN_PASSWORD,
#   RESTIC_PASSWORD, BORG_PASSPHRASE (throwaway defaults are set).
#
# Data (generated once under WORKDIR/data and reused): tiny-N/ holds N files of 20-40 bytes, each
# different (one blob per file), in N/per-folder folders; large.bin is N MiB of alternating 4 MiB
# stripes of SQL-like text and random bytes. Each tree and the large file are backed up once per
# tool into a fresh repository per tool; the restores are then measured with /usr/bin/time
# (wall, user + system CPU, peak RSS) and the 1-minute load average at their start.
# Results: one line per restore on standard error, a TSV and a Markdown table (median of the runs)
# in WORKDIR/results/.
set -euo pipefail

FILES=100000,200000
PER_FOLDER=1000
LARGE_MIB=512
RUNS=3
TOOLS=cairn,restic
command -v borg >/dev/null && TOOLS=cairn,restic,borg
DROP=
DATA_ONLY=
BASELINE=
TARGET_DIR=
WORK=
while (($#)); do
    case "$1" in
        --files) FILES=$2; shift 2 ;;
        --per-folder) PER_FOLDER=$2; shift 2 ;;
        --large-mib) LARGE_MIB=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --tools) TOOLS=$2; shift 2 ;;
        --drop-caches) DROP=1; shift ;;
        --data-only) DATA_ONLY=1; shift ;;
        --baseline) BASELINE=$2; shift 2 ;;
        --target-dir) TARGET_DIR=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "small_restore.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) WORK=$1; shift ;;
    esac
done
WORK=${WORK:-/var/tmp/cairn-small-restore}
HERE=$(cd "$(dirname "$0")" && pwd)
CAIRN=${CAIRN:-$HERE/../target/release/cairn}
# shellcheck source=tools_env.sh
. "$HERE/tools_env.sh"
DATA=$WORK/data REPOS=$WORK/repos CACHES=$WORK/cache LOGS=$WORK/logs RESULTS=$WORK/results TARGET=${TARGET_DIR:-$WORK}/target
mkdir -p "$DATA" "$REPOS" "$CACHES" "$LOGS" "$RESULTS"
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
RESTORERS=("${TOOL_LIST[@]}")
[ -z "$BASELINE" ] || RESTORERS=(cairn-base "${TOOL_LIST[@]}")
IFS=, read -r -a FILE_LIST <<<"$FILES"

say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
[ -n "$DATA_ONLY" ] || [ -x "$CAIRN" ] || die "$CAIRN not found (cargo build --release -p cairn-cli, or set CAIRN)"
for t in "${TOOL_LIST[@]}"; do [ "$t" = cairn ] || command -v "$t" >/dev/null || die "$t not found (apt-get install -y ${t/borg/borgbackup})"; done
if [ -n "$DROP" ]; then
    sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches || die "--drop-caches needs root"
fi

make_tiny() {
    local n=$1 dir=$DATA/tiny-$1
    [ -f "$dir.done" ] && return
    say "generating $n tiny files in $dir"
    rm -rf "$dir"
    python3 - "$dir" "$n" "$PER_FOLDER" <<'PY'
import os, random, sys
root, count, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20261206)
for i in range(count):
    d = os.path.join(root, f"d{i // per:04d}")
    if i % per == 0:
        os.makedirs(d)
    with open(os.path.join(d, f"f{i:07d}.txt"), "w") as f:
        f.write(f"file {i} {rng.getrandbits(64):016x}" + "x" * rng.randrange(0, 15) + "\n")
PY
    touch "$dir.done"
}

make_large() {
    local f=$DATA/large.bin
    [ -f "$f" ] && [ "$(stat -c %s "$f")" = $((LARGE_MIB << 20)) ] && return
    say "generating $f ($LARGE_MIB MiB)"
    python3 - "$f" "$LARGE_MIB" <<'PY'
import os, random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
line = b"INSERT INTO accounts VALUES (%d, 'customer %d', 'pending', 1234.56, '2026-11-01');\n"
with open(path, "wb") as f:
    for stripe in range(mib // 4):
        if stripe % 2:
            f.write(rng.randbytes(4 << 20))
        else:
            out, n = bytearray(), stripe << 20
            while len(out) < 4 << 20:
                out += line % (n, n * 7); n += 1
            f.write(bytes(out[: 4 << 20]))
PY
}

backup() {  # backup TOOL NAME PATH: a fresh repository per tool and data set
    local tool=$1 name=$2 path=$3 repo=$REPOS/$1-$2
    [ -f "$repo.done" ] && return
    rm -rf "$repo" "$CACHES/$tool-$name"
    say "$tool: backing up $path"
    case $tool in
        cairn) "$CAIRN" -r "$repo" --cache-dir "$CACHES/$tool-$name" -q init
               "$CAIRN" -r "$repo" --cache-dir "$CACHES/$tool-$name" -q backup "$path" ;;
        restic) restic -r "$repo" --cache-dir "$CACHES/$tool-$name" -q init --repository-version 2
                restic -r "$repo" --cache-dir "$CACHES/$tool-$name" -q backup "$path" ;;
        borg) BORG_BASE_DIR=$CACHES/$tool-$name borg init -e "$BORG_ENCRYPTION" "$repo"
              BORG_BASE_DIR=$CACHES/$tool-$name borg create --compression lz4 "$repo::one" "$path" ;;
    esac >"$LOGS/$tool-$name-backup.log" 2>&1 || die "$tool backup of $path failed (log: $LOGS/$tool-$name-backup.log)"
    touch "$repo.done"
}

TSV=$RESULTS/small-restore-$(date +%Y%m%d-%H%M%S).tsv
restore() {  # restore TOOL NAME RUN
    local tool=$1 name=$2 run=$3 repo=$REPOS/${1/cairn-base/cairn}-$2 log=$LOGS/$1-$2-restore.log load wall user sys rss
    rm -rf "$TARGET"
    sync
    [ -n "$DROP" ] && echo 3 >/proc/sys/vm/drop_caches
    load=$(cut -d' ' -f1 /proc/loadavg)
    local cmd
    case $tool in
        cairn) cmd=("$CAIRN" -r "$repo" --cache-dir "$CACHES/$tool-$name" -q restore latest --target "$TARGET") ;;
        cairn-base) cmd=("$BASELINE" -r "$repo" --cache-dir "$CACHES/cairn-$name" -q restore latest --target "$TARGET") ;;
        restic) cmd=(restic -r "$repo" --cache-dir "$CACHES/$tool-$name" -q restore latest --target "$TARGET") ;;
        # borg extracts into the current folder.
        borg) mkdir -p "$TARGET"
              cmd=(env BORG_BASE_DIR="$CACHES/$tool-$name" sh -c 'cd "$1" && exec borg extract "$2"' sh "$TARGET" "$repo::one") ;;
    esac
    /usr/bin/time -f '%e %U %S %M' -o "$LOGS/time.out" "${cmd[@]}" >"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; die "$tool restore of $name failed (log: $log)"; }
    read -r wall user sys rss < <(tail -n1 "$LOGS/time.out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$name" "$run" "$wall" "$user" "$sys" "$rss" "$load" >>"$TSV"
    say "$(printf '%-6s restore %-12s run %s: wall %6.2f s  cpu %6.2f s (user %.2f sys %.2f)  rss %4d MB  load %s' \
        "$tool" "$name" "$run" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$user" "$sys" $((rss / 1024)) "$load")"
}

check_restored() {  # check_restored NAME SOURCE: the last restore equals the source
    local found
    found=$(find "$TARGET" -maxdepth 8 -path "*$2" -print -quit)
    [ -n "$found" ] || die "restored $1 not found under $TARGET"
    diff -r "$2" "$found" >/dev/null || die "restored $1 differs from $2"
}

SETS=()
for n in "${FILE_LIST[@]}"; do make_tiny "$n"; SETS+=("tiny-$n"); done
if ((LARGE_MIB > 0)); then make_large; SETS+=(large); fi
[ -z "$DATA_ONLY" ] || exit 0
for name in "${SETS[@]}"; do
    src=$DATA/$name; [ "$name" = large ] && src=$DATA/large.bin
    for tool in "${TOOL_LIST[@]}"; do backup "$tool" "$name" "$src"; done
    for ((run = 1; run <= RUNS; run++)); do
        for tool in "${RESTORERS[@]}"; do
            restore "$tool" "$name" "$run"
            [ "$run" = 1 ] && check_restored "$name" "$src"
        done
    done
done
rm -rf "$TARGET"

python3 - "$TSV" "${RESTORERS[@]}" >"${TSV%.tsv}.md" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
tools = sys.argv[2:]
sets = list(dict.fromkeys(r[1] for r in rows))
def med(tool, name):
    rs = [r for r in rows if r[0] == tool and r[1] == name]
    if not rs: return None
    wall = statistics.median(float(r[3]) for r in rs)
    cpu = statistics.median(float(r[4]) + float(r[5]) for r in rs)
    rss = max(int(r[6]) for r in rs) / 1024
    loads = ", ".join(r[7] for r in rs)
    return wall, cpu, rss, loads, len(rs)
others = [t for t in ("restic", "borg") if "cairn" in tools and t in tools]
print("| restore | " + " | ".join(f"{t} wall / CPU / peak RSS" for t in tools) + "".join(f" | {t} ÷ cairn (wall / CPU)" for t in others) + " |")
print("| --- " * (len(tools) + 1 + len(others)) + "|")
for s in sets:
    m = {t: med(t, s) for t in tools}
    cells = [f"{x[0]:.2f} s / {x[1]:.2f} s / {x[2]:.0f} MB" if (x := m[t]) else "" for t in tools]
    ratio = ""
    for t in others:
        c, r = m["cairn"], m[t]
        ratio += f" | {r[0] / c[0]:.1f}× / {r[1] / c[1]:.1f}×" if c and r else " | "
    print(f"| {s} | " + " | ".join(cells) + ratio + " |")
print()
print("median of " + str(max(x[4] for t in tools for s in sets if (x := med(t, s)))) + " runs; load averages at the start of each run: "
      + "; ".join(f"{t} {s}: {x[3]}" for s in sets for t in tools if (x := med(t, s))))
PY
cat "${TSV%.tsv}.md"
