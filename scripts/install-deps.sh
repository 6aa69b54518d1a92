#!/bin/sh
# Install every Debian package that building and testing xen-virtiod needs.
# Idempotent and quiet when everything is already present. Needs root (or sudo)
# only when something is missing.
set -eu

PKGS="build-essential pkg-config clang llvm libclang-rt-14-dev \
libxen-dev libev-dev libinih-dev liburing-dev libcmocka-dev libsystemd-dev \
libseccomp-dev libnbd-dev nbdkit qemu-utils qemu-system-common librbd-dev librados-dev ceph-mon ceph-osd ceph-common \
libgpiod-dev man-db groff-base iproute2 socat kmod util-linux e2fsprogs \
fio gnuplot-nox i2c-tools valgrind cppcheck clang-tidy \
debhelper dpkg-dev lintian systemd"

[ -n "${XVD_EXTRA_PKGS:-}" ] && PKGS="$PKGS $XVD_EXTRA_PKGS"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
