#!/usr/bin/env bash
# The test command (README, .ci/run): brings the Debian tools the tests use, starts a real
# S3 server (Ceph radosgw) on loopback for the s3 backend's conformance suite, runs bun test,
# then runs the suites that start blockmend processes a second time with those processes
# under Deno (BLOCKMEND_TEST_RUNTIME=deno), and stops everything it started. Extra
# arguments go to `bun test` (e.g. a path filter) and skip the Deno pass.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: qemu-img/qemu-io/qemu-nbd (qemu-utils), nbdinfo/nbdcopy
# (libnbd-bin), certtool for the NBD TLS tests' certificates (gnutls-bin), Ceph's S3 gateway
# for the S3 conformance suite, the S3 clients the S3 endpoint's interop tests drive (awscli,
# rclone, s3cmd), and the checkers of the deployment files: docker-compose (`config`
# validates compose.yaml without an engine) and systemd-analyze (verify and security of the
# units in deploy/systemd), virt-xml-validate (libvirt-clients, with xmllint) for the libvirt
# domains in deploy/libvirt, and Chromium for the dashboard's browser tests (driven by
# playwright-core, which downloads no browser of its own).
PACKAGES=(qemu-utils libnbd-bin gnutls-bin ceph-mon ceph-osd ceph-mgr radosgw ceph-common uuid-runtime curl python3
  docker-compose systemd awscli rclone s3cmd chromium libvirt-clients libxml2-utils)
TOOLS=(qemu-img qemu-io nbdinfo nbdcopy certtool radosgw ceph-osd ceph-mon ceph-mgr uuidgen curl python3
  docker-compose systemd-analyze aws rclone s3cmd chromium virt-xml-validate xmllint)
missing=()
for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  line="apt-get update && apt-get install -y --no-upgrade ${PACKAGES[*]}"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing missing tools (${missing[*]}): $line"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-upgrade "${PACKAGES[@]}" >/dev/null
  else
    echo "test.sh: missing ${missing[*]}. Install them with:" >&2
    echo "  sudo $line" >&2
    exit 1
  fi
fi

BUN=node_modules/.bin/bun
for bin in bun deno; do
  [ -x "node_modules/.bin/$bin" ] || { echo "test.sh: run 'npm ci' first (node_modules/.bin/$bin is missing)" >&2; exit 1; }
done

# Suites whose servers are real `blockmend` processes (test/support/processes.ts): the chunk
# store conformance suite, NBD interop with QEMU's and libnbd's clients, the heal scenario,
# the dashboard's event stream,
# replication and fencing, crash safety, the CLI, the deployment files' command lines. Run
# again with every server under Deno.
DENO_SUITES=(
  test/runtime/chunkstore-process.test.ts
  test/runtime/secure-deployment.test.ts
  test/gateway/gateway-interop.test.ts
  test/gateway/heal/heal-scenario.test.ts
  test/gateway/http/events-process.test.ts
  test/gateway/replication
  test/chunkstore/file-store-kill.test.ts
  test/cli/chunkstore-command.test.ts
  test/cli/config-file.test.ts
  test/deploy/compose.test.ts
  test/deploy/systemd.test.ts
)

s3dir=""
out=""
cleanup() {
  if [ -n "$out" ]; then rm -f "$out"; fi
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

out=$(mktemp /tmp/blockmend-test-output.XXXXXX)
# The count bun test prints last for "pass" or "fail" in the run logged in $out (0 if none).
count() { local n; n=$(grep -Eo "^ *[0-9]+ $1\$" "$out" | tail -1 | tr -dc 0-9); echo "${n:-0}"; }
set +e
"$BUN" test --timeout 60000 "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
pass=$(count pass)
fail=$(count fail)
if (($# == 0)); then
  echo "test.sh: the process-level suites again, with every blockmend server under Deno"
  BLOCKMEND_TEST_RUNTIME=deno "$BUN" test --timeout 60000 "${DENO_SUITES[@]}" 2>&1 | tee "$out"
  deno_status=${PIPESTATUS[0]}
  ((status == 0)) && status=$deno_status
  pass=$((pass + $(count pass)))
  fail=$((fail + $(count fail)))
fi
set -e
rm -f "$out"
echo "$pass passed, $fail failed"
exit "$status"
