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

# install_package TAG: install xen-virtiod from its arm64 Debian package (/e2e/pkg/*.deb, phase
# daemon) the way an administrator does, with busybox's dpkg, so that the package's files and
# maintainer scripts are what runs; one "TAG installed ..." or "TAG dpkg -i ... failed" line.
# --force-depends: the libraries come from the initramfs, not from packages dpkg knows of.
install_package() {
	for deb in /e2e/pkg/*.deb; do
		[ -e "$deb" ] || continue
		mkdir -p /var/lib/dpkg/info /var/lib/dpkg/updates
		[ -e /var/lib/dpkg/status ] || : > /var/lib/dpkg/status
		if dpkg -i --force-depends "$deb" >/run/dpkg-install.log 2>&1; then
			echo "$1 installed $(basename "$deb"): $(dpkg -l xen-virtiod 2>/dev/null | tail -1 | tr -s ' ')"
		else
			echo "$1 dpkg -i $(basename "$deb") failed:"; cat /run/dpkg-install.log
		fi
	done
}

# ---- xen-virtiod in explicit mode: the guest created paused, its instance started and serving
# (READY) before the guest is unpaused (xen-virtiod-create), so the guest never probes a window
# nobody serves.
XVD_RUN=/run/xen-virtiod
XVD_LOG=/var/log/xen-virtiod

# daemon_log NAME: the log of NAME's instance.
daemon_log() { echo "$XVD_LOG/$1.log"; }

# explicit_ini NAME: write $XVD_RUN/NAME.ini: an explicit-mode [guest] section, then stdin (the
# device sections, each with mmio and irq).
explicit_ini() {
	mkdir -p "$XVD_RUN" "$XVD_LOG"
	{ printf '[guest]\nname = %s\ndiscovery = explicit\nlog_level = debug\n\n' "$1"; cat; } > "$XVD_RUN/$1.ini"
}

# explicit_disk NAME [GUEST-KEY-LINE]...: a 64 MiB image /run/NAME.img served as [block "vda"] at
# 0x02000000, SPI 33 (one-window.cfg's window); the lines go into the [guest] section.
explicit_disk() {
	n=$1; shift
	truncate -s 64M "/run/$n.img"
	{ for l in "$@"; do echo "$l"; done
	  printf '\n[block "vda"]\nmmio = 0x02000000\nirq = 33\npath = /run/%s.img\n' "$n"; } | explicit_ini "$n"
}

# start_explicit SCENARIO NAME CFG: xen-virtiod-create CFG (xl create -p; xen-virtiod, which
# returns once it serves; xl unpause). On failure: the log's last lines, a FAIL result, return 1.
start_explicit() {
	say "xen-virtiod-create $3"
	XEN_VIRTIOD_SYSTEMD=no XEN_VIRTIOD_CONFIG_DIR=$XVD_RUN XEN_VIRTIOD_LOG_DIR=$XVD_LOG \
		xen-virtiod-create "$3" && return 0
	tail -n 20 "$(daemon_log "$2")" 2>/dev/null
	result FAIL "$1" "xen-virtiod-create failed"
	return 1
}

# wait_gone_or_fail SCENARIO NAME SECONDS: wait for the guest to power off; if it does not: the
# logs' last lines, the guest destroyed, a FAIL result, return 1.
wait_gone_or_fail() {
	wait_guest_gone "$2" "$3" && return 0
	tail -n 20 "$(guest_log "$2")"; tail -n 20 "$(daemon_log "$2")" 2>/dev/null
	xl destroy "$2" 2>/dev/null
	result FAIL "$1" "guest still running after $3 s"
	return 1
}

# run_explicit SCENARIO NAME CFG SECONDS: start_explicit, then wait_gone_or_fail.
run_explicit() { start_explicit "$1" "$2" "$3" && wait_gone_or_fail "$1" "$2" "$4"; }

# wait_daemons_exit SECONDS: an instance notices its guest's death and exits on its own; 1 if
# one still runs after SECONDS.
wait_daemons_exit() {
	i=0
	while pidof xen-virtiod >/dev/null; do
		i=$((i + 1)); [ "$i" -gt $(($1 * 2)) ] && return 1
		sleep 0.5
	done
	return 0
}
stop_daemons() { for p in $(pidof xen-virtiod); do kill "$p"; done; }

# guest_lines NAME PREFIX: the guest's console lines starting with "PREFIX ", prefix removed.
guest_lines() { { tr -d '\r' < "$(guest_log "$1")"; } 2>/dev/null | sed -n "s/^$2 //p"; }

# ---- networks: bridge_up: dom0's bridge xenbr0 (10.0.0.1/24, as in make demo), made once, for the
# taps of [net] devices that name it; 1 when it cannot be made.
bridge_up() {
	ip link set lo up
	ip link show xenbr0 >/dev/null 2>&1 && return 0
	ip link add xenbr0 type bridge && ip addr add 10.0.0.1/24 dev xenbr0 && ip link set xenbr0 up
}

# ---- disks: the guest half blk.guest.sh prints "E2E-GUEST-BLK-SUM <sha256> <file>" lines;
# dom0 mounts the image read-only and compares. sums_in_image IMG SUMS: prints match/MISMATCH
# lines; sets $ok and $bad.
sums_in_image() {
	mkdir -p /mnt/img
	ok=0 bad=0 lo=""
	if ! mount -o ro -t ext4 "$1" /mnt/img 2>/dev/null; then
		lo=$(losetup -f) && losetup "$lo" "$1" && mount -o ro -t ext4 "$lo" /mnt/img ||
			{ bad=1; echo "dom0 cannot mount $1"; return 1; }
	fi
	echo "$2" | while read -r sum f; do
		[ -n "$f" ] || continue
		d=$(sha256sum "/mnt/img/$f" 2>/dev/null | cut -d' ' -f1)
		[ "$d" = "$sum" ] && echo "match $f" || echo "MISMATCH $f guest=$sum dom0=${d:-missing}"
	done > /run/sums.cmp
	umount /mnt/img
	[ -z "$lo" ] || losetup -d "$lo" 2>/dev/null
	cat /run/sums.cmp
	ok=$(grep -c '^match' /run/sums.cmp); bad=$(grep -c '^MISMATCH' /run/sums.cmp)
}

# blk_check IMG [REREAD]: 0 when the guest's "$sums" (three files or more) match what dom0 reads
# in IMG and, when given, what the guest's second boot read back (REREAD); else 1 with $why.
blk_check() {
	sums_in_image "$1" "$sums"
	if [ $# -ge 2 ] && { [ -z "$2" ] || [ "$2" != "$sums" ]; }; then
		why="second boot read back [$(echo $2 | head -c 300)], first wrote [$(echo $sums | head -c 300)]"
		return 1
	fi
	[ "$ok" -ge 3 ] && [ "$bad" -eq 0 ] && return 0
	why="$ok files matched in dom0, $bad differ or missing (guest wrote: [$(echo $sums | head -c 300)])"
	return 1
}
