# Helpers for scenarios running in dom0 (sourced by /e2e/run-scenarios.sh and each scenario).
export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/aarch64-linux-gnu:/usr/lib/aarch64-linux-gnu

# result PASS|FAIL|SKIP NAME EVIDENCE...: the one line the host parses.
result() { st=$1 name=$2; shift 2; echo "E2E-RESULT $st $name $*"; }
now() { cut -d' ' -f1 /proc/uptime; }
say() { echo "[$(now)] $*"; }

# guest_log NAME: path of the guest's console log written by xenconsoled.
guest_log() { echo "/var/log/xen/console/guest-$1.log"; }

# wait_guest_gone NAME SECONDS: wait until the domain no longer exists (powered off).
wait_guest_gone() {
	i=0
	while xl domid "$1" >/dev/null 2>&1; do
		i=$((i + 1)); [ "$i" -gt $(($2 * 2)) ] && return 1
		sleep 0.5
	done
	return 0
}

# wait_log NAME PATTERN SECONDS: wait for an extended regexp in the guest's console log.
wait_log() {
	i=0
	while ! grep -Eq "$2" "$(guest_log "$1")" 2>/dev/null; do
		i=$((i + 1)); [ "$i" -gt $(($3 * 2)) ] && return 1
		sleep 0.5
	done
	return 0
}

# guest_cfg NAME CFG [KEY=VALUE]...: write /run/NAME.cfg from /e2e/guests/CFG with the name set
# and each given xl key replaced (e.g. 'extra = "..."'). Prints the path.
guest_cfg() {
	n=$1 c=$2; shift 2
	cp "/e2e/guests/$c" "/run/$n.cfg.tmp"
	for kv in "name = \"$n\"" "$@"; do
		k=$(echo "$kv" | sed 's/[ =].*//')
		sed -i "/^$k *=/d" "/run/$n.cfg.tmp"
		echo "$kv" >> "/run/$n.cfg.tmp"
	done
	mv "/run/$n.cfg.tmp" "/run/$n.cfg"
	echo "/run/$n.cfg"
}

# Destroy every guest left running (so one scenario never leaks into the next).
cleanup_guests() {
	for d in $(xl list 2>/dev/null | awk 'NR > 2 { print $1 }'); do
		xl destroy "$d" >/dev/null 2>&1
	done
}

have_daemon() { command -v xen-virtiod >/dev/null 2>&1; }
