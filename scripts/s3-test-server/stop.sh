#!/usr/bin/env bash
# Stops the radosgw test server that start.sh DIR started (by its pid files only) and removes DIR.
# Vendored from the dev machine's /work/shared/s3-test-server/ (README there) so CI, where that
# directory may not exist, can run it; keep the two in step when either changes.
DIR=${1:?usage: stop.sh DIR}
for f in "$DIR"/run/*.pid; do
  [ -e "$f" ] || continue
  p=$(cat "$f")
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null && grep -qaE '(ceph-(mon|mgr|osd)|radosgw)' "/proc/$p/cmdline"; then
    kill -TERM "$p"
    for _ in $(seq 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p"
  fi
done
rm -rf "$DIR"
