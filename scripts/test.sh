#!/usr/bin/env bash
# The test command (README, .ci/run): brings the Debian tools the tests use, starts a real
# S3 server (Ceph radosgw) on loopback for the s3 backend's conformance suite, runs bun test,
# and stops everything it started. Extra arguments go to `bun test` (e.g. a path filter).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: qemu-img/qemu-io/qemu-nbd (qemu-utils), nbdinfo/nbdcopy
# (libnbd-bin), Ceph's S3 gateway for the S3 conformance suite, and the S3 clients the S3
# endpoint's interop tests drive (awscli, rclone, s3cmd).
PACKAGES=(qemu-utils libnbd-bin ceph-mon ceph-osd ceph-mgr radosgw ceph-common uuid-runtime curl python3 awscli rclone s3cmd)
TOOLS=(qemu-img qemu-io nbdinfo nbdcopy radosgw ceph-osd ceph-mon ceph-mgr uuidgen curl python3 aws rclone s3cmd)
missing=()
for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  line="apt-get update && apt-get install -y ${PACKAGES[*]}"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing missing tools (${missing[*]}): $line"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
  else
    echo "test.sh: missing ${missing[*]}. Install them with:" >&2
    echo "  sudo $line" >&2
    exit 1
  fi
fi

BUN=node_modules/.bin/bun
[ -x "$BUN" ] || { echo "test.sh: run 'npm ci' first (node_modules/.bin/bun is missing)" >&2; exit 1; }

s3dir=""
cleanup() {
  if [ -n "$s3dir" ]; then bash scripts/s3-test-server/stop.sh "$s3dir" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
if [ -z "${S3_ENDPOINT:-}" ]; then
  # Two free loopback ports (S3 and the Ceph monitor), chosen together; a start that still
  # loses a port to another process is retried with new ones.
  for attempt in 1 2 3; do
    s3dir=$(mktemp -d /tmp/blockmend-s3.XXXXXX)
    rmdir "$s3dir"
    read -r port mon_port < <(python3 -c 'import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
    echo "test.sh: starting Ceph radosgw on 127.0.0.1:$port for the S3 tests (about a minute)"
    log="/tmp/$(basename "$s3dir").log"
    if MON_PORT=$mon_port bash scripts/s3-test-server/start.sh "$s3dir" "$port" >"$log" 2>&1; then break; fi
    bash scripts/s3-test-server/stop.sh "$s3dir" >/dev/null 2>&1 || true
    if [ "$attempt" = 3 ]; then
      echo "test.sh: the S3 test server failed to start; log follows" >&2
      cat "$log" >&2
      exit 1
    fi
    echo "test.sh: the S3 test server did not start (attempt $attempt); trying other ports"
  done
  # shellcheck disable=SC1091
  source "$s3dir/s3.env"
  export S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
fi

# A file of this run's own: other checkouts on the machine may be testing at the same time.
output=$(mktemp /tmp/blockmend-test-output.XXXXXX)
set +e
"$BUN" test --timeout 60000 "$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
set -e
pass=$(grep -aEo '^ *[0-9]+ pass$' "$output" | tail -1 | tr -dc 0-9)
fail=$(grep -aEo '^ *[0-9]+ fail$' "$output" | tail -1 | tr -dc 0-9)
rm -f "$output"
echo "${pass:-0} passed, ${fail:-0} failed"
exit "$status"
