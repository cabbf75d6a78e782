#!/usr/bin/env bash
# A real S3-compatible server for tests: Ceph's radosgw (Debian packages) on one machine, loopback only.
# usage: start.sh DIR [S3_PORT]   -> writes DIR/s3.env (S3_ENDPOINT, AWS_ACCESS_KEY_ID,
#        AWS_SECRET_ACCESS_KEY, AWS_REGION); stop with stop.sh DIR. About 30-60 s on 2 cores.
# Everything lives under DIR (its own ceph.conf via CEPH_CONF); /etc/ceph is not touched.
# Conditional writes (Ceph 16): If-None-Match: * and a wrong If-Match give 412; a correct If-Match
# must send the ETag unquoted; CAS losers may get 500 instead of 412.
# Vendored from the dev machine's /work/shared/s3-test-server/ (README there) so CI, where that
# directory may not exist, can run it; keep the two in step when either changes.
set -euo pipefail
DIR=$(mkdir -p "${1:?usage: start.sh DIR [S3_PORT]}" && cd "$1" && pwd)
S3_PORT=${2:-7480}
MON_PORT=${MON_PORT:-3300}
NOSD=${NOSD:-2}
OSD_SIZE=${OSD_SIZE:-3G}
[ -e "$DIR/ceph.conf" ] && { echo "start.sh: $DIR already holds a cluster; run stop.sh $DIR first" >&2; exit 1; }
if ! command -v radosgw >/dev/null || ! command -v ceph-osd >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq ceph-mon ceph-osd ceph-mgr radosgw ceph-common uuid-runtime >/dev/null
fi
mkdir -p "$DIR"/{mon,mgr,osd,run,log,rgw}
export CEPH_CONF=$DIR/ceph.conf
FSID=$(uuidgen)
cat >"$CEPH_CONF" <<CONF
[global]
fsid = $FSID
mon initial members = a
mon host = [v2:127.0.0.1:$MON_PORT]
public network = 127.0.0.0/8
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr1 = false
auth allow insecure global id reclaim = false
run dir = $DIR/run
pid file = $DIR/run/\$cluster-\$name.pid
admin socket = $DIR/run/\$cluster-\$name.asok
log file = $DIR/log/\$cluster-\$name.log
mon cluster log file = $DIR/log/ceph.log
log to stderr = false
err to stderr = true
osd pool default size = 2
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool delete = true
mon warn on pool no redundancy = false
mon osd min down reporters = 1
mon osd reporter subtree level = osd
[mon]
mon data = $DIR/mon/\$cluster-\$id
mon data avail warn = 5
[mgr]
mgr data = $DIR/mgr/\$cluster-\$id
[osd]
osd data = $DIR/osd/\$cluster-\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $OSD_SIZE
bluestore fsck on mkfs = false
osd memory target = 1073741824
[client.admin]
keyring = $DIR/admin.keyring
[client.rgw.a]
keyring = $DIR/rgw/keyring
rgw data = $DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$S3_PORT
rgw dns name = localhost
admin socket = $DIR/run/\$cluster-\$name.asok
CONF
ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$DIR/admin.keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool --create-keyring "$DIR/bootstrap-osd.keyring" --gen-key -n client.bootstrap-osd --cap mon 'profile bootstrap-osd' --cap mgr 'allow r' >/dev/null
ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/admin.keyring" >/dev/null
ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/bootstrap-osd.keyring" >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$DIR/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
ceph-mon -i a
for _ in $(seq 120); do ceph -s >/dev/null 2>&1 && break; sleep 0.5; done
mkdir -p "$DIR/mgr/ceph-a"
ceph auth get-or-create mgr.a mon 'allow profile mgr' osd 'allow *' -o "$DIR/mgr/ceph-a/keyring"
ceph-mgr -i a
for n in $(seq "$NOSD"); do
  UUID=$(uuidgen); KEY=$(ceph-authtool --gen-print-key)
  ID=$(echo "{\"cephx_secret\": \"$KEY\"}" | ceph osd new "$UUID" -i - -n client.bootstrap-osd -k "$DIR/bootstrap-osd.keyring")
  mkdir -p "$DIR/osd/ceph-$ID"
  ceph-authtool --create-keyring "$DIR/osd/ceph-$ID/keyring" --name "osd.$ID" --add-key "$KEY" >/dev/null
  ceph-osd -i "$ID" --mkfs --osd-uuid "$UUID" >/dev/null 2>&1
  ceph-osd -i "$ID"
done
for _ in $(seq 240); do
  [ "$(ceph osd stat --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_up_osds"])')" = "$NOSD" ] && break; sleep 0.5
done
ceph auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' mgr 'allow rw' -o "$DIR/rgw/keyring"
radosgw -n client.rgw.a
for _ in $(seq 240); do curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/" 2>/dev/null | grep -q 200 && break; sleep 0.5; done
radosgw-admin user create --uid=test --display-name=test >"$DIR/rgw/user.json"
python3 - "$DIR" "$S3_PORT" >"$DIR/s3.env" <<'PY'
import json, sys
d, port = sys.argv[1], sys.argv[2]
k = json.load(open(f"{d}/rgw/user.json"))["keys"][0]
print(f"export S3_ENDPOINT=http://127.0.0.1:{port}")
print(f"export AWS_ACCESS_KEY_ID={k['access_key']}")
print(f"export AWS_SECRET_ACCESS_KEY={k['secret_key']}")
print("export AWS_REGION=us-east-1")
PY
echo "S3 endpoint ready: $(head -1 "$DIR/s3.env" | cut -d= -f2) (credentials in $DIR/s3.env)"
