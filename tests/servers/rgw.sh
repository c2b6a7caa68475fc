#!/bin/bash
# tests/servers/rgw.sh: a throw-away single-node Ceph RGW on loopback for the
# tests (Debian packages ceph-mon ceph-osd radosgw; 1 mon, 1 memstore OSD,
# no cephx, msgr v1 only -- radosgw loops on auth with msgr2 + auth none).
#
# usage: rgw.sh start DIR [RGW_PORT [MON_PORT]]   prints "endpoint=http://127.0.0.1:PORT"
#        rgw.sh stop DIR
# Credentials: RGWTESTKEY / RGWTESTSECRET (user "tester"); vhost base name
# s3.localhost.  All daemons bind 127.0.0.1; PIDs are in DIR/run/*.pid.
# Starting takes about 15 s.  Memory: memstore keeps objects in RAM
# (MEMSTORE_BYTES, default 6 GiB).
set -euo pipefail
CMD=${1:?usage: rgw.sh start|stop DIR [RGW_PORT [MON_PORT]]}
D=${2:?directory}
PORT=${3:-7480}
MONPORT=${4:-6789}
C="$D/ceph.conf"

stop() {
  for n in client.rgw.gw osd.0 mon.a; do
    f="$D/run/$n.pid"
    if [ -f "$f" ]; then
      p=$(cat "$f"); kill "$p" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$p" 2>/dev/null || true
      rm -f "$f"
    fi
  done
}

if [ "$CMD" = stop ]; then stop; exit 0; fi
command -v radosgw >/dev/null || { echo "rgw.sh: radosgw not installed (make deps)" >&2; exit 3; }
# A port already taken (say, by a leftover RGW) would make curl below talk
# to the wrong server: refuse instead.
for p in "$PORT" "$MONPORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "rgw.sh: port $p is already in use" >&2; exit 1
  fi
done

stop 2>/dev/null || true
rm -rf "$D"; mkdir -p "$D"/{run,log,mon.a,osd.0,rgw}
FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$C" <<CONF
[global]
fsid = $FSID
mon_host = v1:127.0.0.1:$MONPORT/0
ms_bind_msgr2 = false
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $D/run
pid_file = $D/run/\$name.pid
admin_socket = $D/run/\$name.asok
log_file = $D/log/\$name.log
keyring = $D/keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_allow_pool_delete = true
osd_crush_chooseleaf_type = 0
[mon.a]
mon_data = $D/mon.a
[osd.0]
osd_data = $D/osd.0
osd_objectstore = memstore
memstore_device_bytes = ${MEMSTORE_BYTES:-6442450944}
[client.rgw.gw]
rgw_frontends = beast endpoint=127.0.0.1:$PORT
rgw_data = $D/rgw
rgw_dns_name = s3.localhost
# memstore keeps objects in RAM: free deleted/overwritten objects at once
# instead of after RGW's default two hours, or big tests fill the OSD.
rgw_gc_obj_min_wait = 0
rgw_gc_processor_period = 5
rgw_gc_processor_max_time = 5
CONF
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --addv a "[v1:127.0.0.1:$MONPORT]" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon -c "$C" --mkfs -i a --monmap "$D/monmap"
ceph-mon -c "$C" -i a
for _ in $(seq 50); do ceph -c "$C" --connect-timeout 2 -s >/dev/null 2>&1 && break; sleep 0.3; done
OSD=""
for _ in $(seq 30); do   # the mon may still refuse commands (EPERM) for a moment
  OSD=$(ceph -c "$C" --connect-timeout 5 osd create 2>>"$D/log/osd-create.err") && break
  OSD=""; sleep 0.5
done
[ -n "$OSD" ] || { echo "rgw.sh: 'ceph osd create' failed (see $D/log)" >&2; stop; exit 1; }
# Right after the mon forms its quorum the OSD's first boot can be refused
# ("wrong fsid", the OSD exits); a fresh mkfs and start a moment later works.
ok=0
for attempt in 1 2 3 4 5; do
  rm -rf "$D/osd.0"; mkdir -p "$D/osd.0"
  ceph-osd -c "$C" -i "$OSD" --mkfs >/dev/null 2>&1
  if ceph-osd -c "$C" -i "$OSD" 2>>"$D/log/osd-start.err"; then ok=1; break; fi
  sleep $attempt
done
[ $ok = 1 ] || { echo "rgw.sh: ceph-osd did not start (see $D/log)" >&2; stop; exit 1; }
for _ in $(seq 100); do ceph -c "$C" osd stat 2>/dev/null | grep -q "1 up" && break; sleep 0.3; done
radosgw -c "$C" -n client.rgw.gw
for _ in $(seq 20); do [ -f "$D/run/client.rgw.gw.pid" ] && break; sleep 0.3; done
up=0
for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && { up=1; break; }; sleep 0.5; done
[ $up = 1 ] || { echo "rgw.sh: RGW did not answer on port $PORT (logs in $D/log)" >&2; stop; exit 1; }
radosgw-admin -c "$C" user create --uid=tester --display-name=tester \
  --access-key=RGWTESTKEY --secret-key=RGWTESTSECRET >/dev/null
echo "endpoint=http://127.0.0.1:$PORT"
