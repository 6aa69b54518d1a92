#!/bin/bash
# Rebuild Debian's own Xen hypervisor for arm64 with CONFIG_EXPERT=y CONFIG_IOREQ_SERVER=y and
# package it as Debian's xen-hypervisor-4.17-arm64, same version plus a local suffix.
#
# Why: on Arm, Xen offers ioreq servers (the device-model interface xen-virtiod and every other
# virtio backend uses) only when built with CONFIG_IOREQ_SERVER, which needs CONFIG_EXPERT.
# Debian builds its hypervisor without them, so on a stock Debian Xen host the first
# device-model call fails with ENOSYS ("xen-virtiod --check-host" says so).
#
# Security status: Xen's SUPPORT.md lists "ARM/IOREQ servers" as a Tech Preview (functionally
# complete, security support: no), and says EXPERT Kconfig options are not security supported.
# A hypervisor built by this script gets no XSA coverage for these parts from the Xen Project;
# Debian's security updates do not replace it by themselves (see the apt-mark hold below).
#
# What it does, reusing Debian's source package and metadata:
#   1. apt-get source --download-only xen=VERSION (needs a deb-src line for bookworm);
#   2. dpkg-source -x (Debian's patches applied); the hypervisor configured as debian/rules
#      does (debian/xen-kconfig, olddefconfig) plus CONFIG_EXPERT=y and CONFIG_IOREQ_SERVER=y;
#   3. make xen with the aarch64 cross compiler (about a minute on two cores);
#   4. Debian's own xen-hypervisor-4.17-arm64 of the same version (apt-get download) is
#      repacked around the new binaries: boot/xen-4.17-arm64, .efi and .config replaced, version
#      VERSION+ioreq1, a changelog entry saying why, md5sums redone; maintainer scripts,
#      relations and documentation stay Debian's.
#
# Usage: scripts/build-xen-ioreq.sh [OUTDIR]
#   OUTDIR       where the .deb goes (default build/xen-ioreq); the path is printed on stdout
# Environment:
#   XEN_SRC_VERSION  the Debian source version (default 4.17.5+72-g01140da4e8-1: the one whose
#                    source files download from the archive, E2E-NOTES.md)
#   XEN_LOCAL_SUFFIX the local version suffix (default +ioreq1)
#   XEN_DL_DIR       where the source and Debian's binary package are downloaded (default
#                    OUTDIR/downloads; reused when present)
#   JOBS             make -j (default nproc)
#   DEBFULLNAME, DEBEMAIL  who the changelog entry names (default: the xen-virtiod maintainers)
#
# Install on the arm64 host (dom0):
#   apt install ./xen-hypervisor-4.17-arm64_VERSION+ioreq1_arm64.deb
#   apt-mark hold xen-hypervisor-4.17-arm64     # a Debian update would bring back IOREQ-less Xen
# then reboot into it and check with "xen-virtiod --check-host" (dm-op: OK).
set -euo pipefail

VERSION=${XEN_SRC_VERSION:-4.17.5+72-g01140da4e8-1}
SUFFIX=${XEN_LOCAL_SUFFIX:-+ioreq1}
OUT=$(mkdir -p "${1:-build/xen-ioreq}" && cd "${1:-build/xen-ioreq}" && pwd)
DL=${XEN_DL_DIR:-$OUT/downloads}
JOBS=${JOBS:-$(nproc)}
CROSS=aarch64-linux-gnu-
PKG=xen-hypervisor-4.17-arm64
NEWVER=$VERSION$SUFFIX
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
t0=$(date +%s)
log() { printf '[build-xen-ioreq %4ds] %s\n' $(( $(date +%s) - t0 )) "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in ${CROSS}gcc dpkg-source dpkg-deb; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install gcc-aarch64-linux-gnu dpkg-dev)"
done

mkdir -p "$DL"
if ! ls "$DL"/xen_*.dsc >/dev/null 2>&1; then
	log "downloading Debian's source xen=$VERSION"
	(cd "$DL" && $SUDO apt-get -o APT::Sandbox::User=root source --download-only -qq "xen=$VERSION" >/dev/null) ||
		die "apt-get source xen=$VERSION failed: is there a deb-src line for bookworm? (a version 'apt-cache showsrc xen' lists)"
fi
bin=$DL/${PKG}_${VERSION//:/%3a}_arm64.deb
if [ ! -s "$bin" ]; then
	log "downloading Debian's $PKG $VERSION (arm64) for its package metadata"
	(cd "$DL" && $SUDO apt-get -o APT::Sandbox::User=root download -qq "$PKG:arm64=$VERSION" >/dev/null) ||
		die "apt-get download $PKG:arm64=$VERSION failed (dpkg --add-architecture arm64; apt-get update)"
fi

work=$OUT/work
rm -rf "$work"; mkdir -p "$work"
log "unpacking the source (Debian's patches applied)"
dpkg-source --no-check -x "$DL"/xen_*.dsc "$work/src" >/dev/null
M=(make -s -C "$work/src/xen" XEN_TARGET_ARCH=arm64 CROSS_COMPILE=$CROSS)
log "configuring as debian/rules does, plus CONFIG_EXPERT=y CONFIG_IOREQ_SERVER=y"
cp "$work/src/debian/xen-kconfig" "$work/src/xen/.config"
printf 'CONFIG_EXPERT=y\nCONFIG_IOREQ_SERVER=y\n' >> "$work/src/xen/.config"
"${M[@]}" olddefconfig >/dev/null
for opt in CONFIG_EXPERT CONFIG_IOREQ_SERVER; do
	grep -qx "$opt=y" "$work/src/xen/.config" || die "$opt did not stick"
done
log "building the hypervisor with $JOBS jobs"
"${M[@]}" -j"$JOBS" > "$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; die "xen build failed (log: $work/build.log)"; }

log "repacking Debian's $PKG around it as $NEWVER"
root=$work/pkg
dpkg-deb -R "$bin" "$root"
install -m 0644 "$work/src/xen/xen" "$root/boot/xen-4.17-arm64"
# On arm64 the hypervisor image is also the EFI application (Debian ships it twice).
efi=$work/src/xen/xen.efi
[ -f "$efi" ] || efi=$work/src/xen/xen
install -m 0644 "$efi" "$root/boot/xen-4.17-arm64.efi"
install -m 0644 "$work/src/xen/.config" "$root/boot/xen-4.17-arm64.config"
doc=$root/usr/share/doc/$PKG
{
	printf 'xen (%s) bookworm; urgency=medium\n\n' "$NEWVER"
	printf '  * Local rebuild of the hypervisor with CONFIG_EXPERT=y and\n'
	printf '    CONFIG_IOREQ_SERVER=y (scripts/build-xen-ioreq.sh of xen-virtiod), so\n'
	printf '    that device models (virtio backends) can serve guests on Arm.\n'
	printf '    Xen lists Arm IOREQ servers as a Tech Preview: not security supported.\n\n'
	printf ' -- %s <%s>  %s\n\n' "${DEBFULLNAME:-xen-virtiod maintainers}" \
		"${DEBEMAIL:-maintainers@users.noreply.r-seed-7946bc92.example}" \
		"$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")"
	gzip -dc "$doc/changelog.Debian.gz"
} | gzip -9n > "$work/changelog.Debian.gz"
mv "$work/changelog.Debian.gz" "$doc/changelog.Debian.gz"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -i -e "s/^Version: .*/Version: $NEWVER/" -e "s/^Installed-Size: .*/Installed-Size: $size/" \
	"$root/DEBIAN/control"
# Description is the control file's last field: its long text gains a paragraph.
tail -n 1 "$root/DEBIAN/control" | grep -q '^ ' || die "unexpected control file layout"
printf ' .\n Rebuilt with CONFIG_EXPERT=y CONFIG_IOREQ_SERVER=y so that device models\n (virtio backends) can serve guests; not security supported upstream.\n' \
	>> "$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z |
	xargs -0 md5sum > DEBIAN/md5sums)
deb=$OUT/${PKG}_${NEWVER}_arm64.deb
dpkg-deb --root-owner-group -Zxz -b "$root" "$deb" >/dev/null
cp "$work/src/xen/.config" "$OUT/xen.config"
rm -rf "$work"
log "built $deb"
echo "$deb"
