#!/bin/sh
# scripts/xen-virtiod-create against a fake xl and a fake daemon (no Xen here): the order of
# calls, the paused guest destroyed when the backend fails, and the exit statuses.
set -u
here=$(cd "$(dirname "$0")" && pwd)
script="$here/../../scripts/xen-virtiod-create"
t=$(mktemp -d /tmp/xvd-create-XXXXXX)
trap 'rm -rf "$t"' EXIT
fails=0

cat > "$t/xl" <<'EOS'
#!/bin/sh
echo "xl $*" >> "$CALLS"
[ "$1" = domid ] && echo 42
[ "$1" = unpause ] && [ -n "${XL_UNPAUSE_FAIL:-}" ] && exit 1
exit 0
EOS
cat > "$t/daemon" <<'EOS'
#!/bin/sh
echo "daemon $*" >> "$CALLS"
echo "daemon log line"
exit "${DAEMON_RC:-0}"
EOS
chmod +x "$t/xl" "$t/daemon"
printf 'name = "g1"\nmemory = 128\n' > "$t/g1.cfg"
mkdir -p "$t/conf" && : > "$t/conf/g1.ini"
export XL="$t/xl" XEN_VIRTIOD="$t/daemon" XEN_VIRTIOD_CONFIG_DIR="$t/conf" \
	XEN_VIRTIOD_LOG_DIR="$t/log" XEN_VIRTIOD_SYSTEMD=no CALLS="$t/calls"

# check NAME WANT_RC WANT_CALLS [ENV=VAL...] -- ARGS...
check() {
	name=$1 want_rc=$2 want=$3; shift 3
	: > "$CALLS"
	env_args=""
	while [ "$1" != "--" ]; do env_args="$env_args $1"; shift; done
	shift
	# shellcheck disable=SC2086
	env $env_args "$script" "$@" > "$t/out" 2>&1; rc=$?
	got=$(cat "$CALLS")
	if [ "$rc" -ne "$want_rc" ] || [ "$got" != "$want" ]; then
		echo "FAIL $name: exit $rc (want $want_rc); calls:"; echo "$got"; cat "$t/out"
		fails=$((fails + 1))
	else
		echo "ok   $name"
	fi
}

check "serves, then unpauses" 0 "xl create -p $t/g1.cfg vcpus=2
xl domid g1
daemon --config $t/conf/g1.ini --domain 42
xl unpause 42" -- "$t/g1.cfg" vcpus=2

check "backend failure destroys the guest" 1 "xl create -p $t/g1.cfg
xl domid g1
daemon --config $t/conf/g1.ini --domain 42
xl destroy 42" DAEMON_RC=78 -- "$t/g1.cfg"

check "unpause failure destroys the guest" 1 "xl create -p $t/g1.cfg
xl domid g1
daemon --config $t/conf/g1.ini --domain 42
xl unpause 42
xl destroy 42" XL_UNPAUSE_FAIL=1 -- "$t/g1.cfg"

check "no INI: nothing is created" 1 "" -- "$t/g1.cfg" name=other
check "no arguments: usage" 64 "" --

exit "$fails"
