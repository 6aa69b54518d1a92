#!/bin/sh
# A one-node Ceph cluster for tests: one ceph-mon and one ceph-osd (memstore) on 127.0.0.1, in a
# directory of its own, no systemd, cephx on. Every step waits for a condition, never a fixed time.
#
#   ceph-cluster.sh start DIR PORT   mon on 127.0.0.1:PORT (msgr2), the OSD up and in, pool "rbd"
#                                    initialised; prints DIR/ceph.conf (client.admin in DIR/keyring)
#   ceph-cluster.sh osd-stop DIR     stop the OSD cleanly (its memstore is saved to DIR/osd0)
#   ceph-cluster.sh osd-kill DIR     SIGKILL the OSD (what it had not saved is lost: memstore)
#   ceph-cluster.sh osd-start DIR    start it again; returns once the monitor sees it up
#   ceph-cluster.sh mon-stop DIR     stop the monitor (SIGTERM; its store stays in DIR/mon)
#   ceph-cluster.sh mon-start DIR    start it again; returns once it answers
#   ceph-cluster.sh stop DIR         stop both daemons (DIR stays; the caller removes it)
#   ceph-cluster.sh available        exit 0 when the packages are installed
#
# CEPH_WAIT (seconds, default 120) bounds every wait; exit 1 with the daemon's log tail on failure.
# CEPH_OWNER=PID (start): the daemons are killed when that process ends, so a test that dies
# (a crash, a timeout) leaves no cluster behind.
set -eu

wait_max=${CEPH_WAIT:-120}

have() { command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null &&
	 command -v ceph >/dev/null && command -v rbd >/dev/null && command -v monmaptool >/dev/null; }

# until CMD...: poll CMD every 50 ms up to wait_max seconds (the condition, not the time, ends it).
until_ok() {
	end=$(( $(date +%s) + wait_max ))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$end" ]; then
			echo "ceph-cluster: timed out waiting for: $*" >&2
			tail -n 20 "$d"/*.log >&2 2>/dev/null || true
			return 1
		fi
		sleep 0.05
	done
}

c() { ceph --conf "$d/ceph.conf" --connect-timeout 10 "$@"; }

osd_up() { c osd dump 2>/dev/null | grep -q '^osd\.0 up .* in '; }
osd_down() { ! c osd dump 2>/dev/null | grep -q '^osd\.0 up '; }
# Gone, or a zombie nobody reaps yet (a daemon's parent is init once its owner died).
pid_gone() {
	p=$(cat "$1" 2>/dev/null) || return 0
	st=$(cut -d' ' -f3 "/proc/$p/stat" 2>/dev/null) || return 0
	[ -z "$st" ] || [ "$st" = Z ]
}

osd_start() {
	ceph-osd --conf "$d/ceph.conf" -i 0 --pid-file "$d/osd.pid"
	until_ok osd_up
}

# Tell the monitor at once (a lone OSD has no peer to report it), then wait for the map.
osd_signal() {
	[ -f "$d/osd.pid" ] || return 0
	pid=$(cat "$d/osd.pid")
	kill "-$1" "$pid" 2>/dev/null || true
	until_ok pid_gone "$d/osd.pid"
	c osd down 0 >/dev/null 2>&1 || true
	until_ok osd_down
}

mon_stop() {
	kill -TERM "$(cat "$d/mon.a.pid")" 2>/dev/null || true
	until_ok pid_gone "$d/mon.a.pid"
}

mon_start() {
	ceph-mon --conf "$d/ceph.conf" -i a
	until_ok c mon stat
}

start() {
	port=$1
	mkdir -p "$d/mon" "$d/osd0"
	fsid=$(cat /proc/sys/kernel/random/uuid)
	cat >"$d/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
mon initial members = a
public network = 127.0.0.0/8
ms bind msgr1 = false
ms bind ipv4 = true
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $d/keyring
log file = $d/\$name.log
admin socket = $d/\$name.asok
pid file = $d/\$name.pid
run dir = $d
crash dir = $d/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = memstore
memstore device bytes = 1073741824
osd data = $d/osd0
osd memory target = 268435456
osd fast shutdown = false
bluestore cache size = 33554432
osd op num shards = 1
osd op num threads per shard = 2
ms async op threads = 1
mon osd report timeout = 3600
osd heartbeat grace = 3600
[mon.a]
mon data = $d/mon
mon addr = v2:127.0.0.1:$port
EOF
	ceph-authtool "$d/keyring" --create-keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
	ceph-authtool "$d/keyring" --gen-key -n client.admin --cap mon 'allow *' \
		--cap osd 'allow *' --cap mgr 'allow *'
	ceph-authtool "$d/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' \
		--cap osd 'allow *' --cap mgr 'allow profile osd'
	monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$d/monmap" >/dev/null
	ceph-mon --conf "$d/ceph.conf" -i a --mkfs --monmap "$d/monmap" --keyring "$d/keyring"
	ceph-mon --conf "$d/ceph.conf" -i a
	until_ok c mon stat
	uuid=$(cat /proc/sys/kernel/random/uuid)
	c osd new "$uuid" 0 >/dev/null
	ceph-osd --conf "$d/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" >/dev/null 2>&1
	cp "$d/keyring" "$d/osd0/keyring"
	osd_start
	c osd pool create rbd 8 >/dev/null 2>&1
	c osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null 2>&1 || true
	until_ok rbd --conf "$d/ceph.conf" pool init rbd
	if [ -n "${CEPH_OWNER:-}" ]; then
		# tail --pid waits for the owner's end (no fixed sleep here).
		(tail --pid="$CEPH_OWNER" -f /dev/null; stop) </dev/null >/dev/null 2>&1 &
	fi
	echo "$d/ceph.conf"
}

stop() {
	for n in osd mon.a; do
		f="$d/$n.pid"
		[ -f "$f" ] || continue
		kill -KILL "$(cat "$f")" 2>/dev/null || true
		until_ok pid_gone "$f"
	done
}

cmd=${1:-}
if [ "$cmd" = available ]; then
	have
	exit
fi
d=${2:?usage: ceph-cluster.sh start|stop|osd-stop|osd-kill|osd-start|mon-stop|mon-start DIR [PORT]}
case $cmd in
start) start "${3:?port}" ;;
stop) stop ;;
osd-stop) osd_signal TERM ;;
osd-kill) osd_signal KILL ;;
osd-start) osd_start ;;
mon-stop) mon_stop ;;
mon-start) mon_start ;;
*) echo "ceph-cluster: unknown command $cmd" >&2; exit 2 ;;
esac
