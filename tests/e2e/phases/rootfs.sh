#!/bin/bash
# Phase "rootfs SET" (SET = dom0 | guest): a root filesystem from Debian arm64 packages, extracted
# with dpkg -x (no maintainer scripts), keeping only the programs we use and the shared libraries
# they need; packed as a gzip'd cpio (no /init: the initramfs phase adds it).
# Key: the resolved package versions + this script. Output: $E2E_CACHE/rootfs-SET/<key>/rootfs.cpio.gz.
set -euo pipefail
SET=${1:?usage: rootfs.sh dom0|guest}
E2E_PHASE=rootfs-$SET
. "$(dirname "$0")/../lib.sh"

case $SET in
dom0)
	# Xen's tools (same version as the hypervisor), busybox, the daemon's runtime libraries, and
	# socat (busybox's nc has no unix sockets): the client of the daemon's console, gpio and vsock sockets;
	# qemu-utils: qemu-nbd and qemu-img, a qcow2 image served over NBD (scenario nbd-qcow2).
	ROOTS="busybox-static socat qemu-utils xen-utils-4.17 xen-utils-common xenstore-utils libxenmisc4.17 libxencall1
	       libxendevicemodel1 libxenevtchn1 libxenforeignmemory1 libxengnttab1 libxenstore4
	       libxentoolcore1 libxentoollog1 libxenhypfs1 libyajl2 libext2fs2 libfdt1 libuuid1 zlib1g
	       libncurses6 libtinfo6 libc6 libgcc-s1 libev4 libinih1 liburing2 libsystemd0 libseccomp2 libgpiod2"
	KEEP="bin/busybox usr/bin/socat usr/bin/qemu-nbd usr/bin/qemu-img usr/lib/xen-4.17/bin usr/bin/xenstore* etc/xen"
	# Libraries kept even if no program here needs them yet (the daemon, installed later);
	# libgcc_s.so.1: glibc dlopen()s it for pthread_cancel (xl aborts without it).
	KEEP_LIBS="libgcc_s.so.1 libev.so.4 libinih.so.1 liburing.so.2 libsystemd.so.0 libseccomp.so.2 libgpiod.so.2 libxendevicemodel.so.1
	           libxenforeignmemory.so.1 libxenevtchn.so.1 libxengnttab.so.1 libxenstore.so.4"
	;;
guest)
	# gpiod: libgpiod's v1.6 tools (gpioinfo, gpioset, gpiomon, ...) for virtio-gpio; socat
	# (VSOCK-CONNECT, VSOCK-LISTEN) for virtio-vsock.
	ROOTS="busybox-static e2fsprogs fio i2c-tools libi2c0 gpiod libgpiod2 socat libc6 libgcc-s1"
	KEEP="bin/busybox sbin/mke2fs sbin/mkfs.ext4 sbin/e2fsck sbin/fsck.ext4 sbin/tune2fs
	      usr/bin/fio usr/sbin/i2cdetect usr/sbin/i2cget usr/sbin/i2cset usr/sbin/i2cdump usr/sbin/i2ctransfer
	      usr/bin/gpiodetect usr/bin/gpioinfo usr/bin/gpioget usr/bin/gpioset usr/bin/gpiomon usr/bin/gpiofind
	      usr/bin/socat"
	KEEP_LIBS="libgcc_s.so.1"
	;;
*) die "unknown set $SET";;
esac

# shellcheck disable=SC2086
pkgs=$(resolve_arm64 $ROOTS)
key=$(key_of "$pkgs" "$KEEP" "$KEEP_LIBS" "$(hash_files "$0" "$E2E_DIR/lib.sh")")
out=$(cache_dir "rootfs-$SET" "$key")
if is_done "$out"; then log "cached: $out/rootfs.cpio.gz"; echo "$out/rootfs.cpio.gz"; exit 0; fi

# shellcheck disable=SC2086
mapfile -t debs < <(fetch_arm64 $pkgs)
rm -rf "$out"; mkdir -p "$out/stage" "$out/root"
log "extracting ${#debs[@]} packages"
for d in "${debs[@]}"; do dpkg-deb -x "$d" "$out/stage"; done

root=$out/root
for p in $KEEP; do
	# shellcheck disable=SC2086
	for src in $out/stage/$p; do
		[ -e "$src" ] || [ -L "$src" ] || die "$p not in the packages"
		rel=${src#"$out/stage/"}
		mkdir -p "$root/$(dirname "$rel")"
		cp -a "$src" "$root/$rel"
	done
done
for so in $KEEP_LIBS; do
	src=$(ls "$out/stage"/{lib,usr/lib}/aarch64-linux-gnu/"$so" 2>/dev/null | head -1 || true)
	[ -n "$src" ] || die "$so not in the packages"
	rel=${src#"$out/stage/"}; mkdir -p "$root/$(dirname "$rel")"; cp -L "$src" "$root/$rel"
done
# Busybox provides the shell and every other tool (links made by /init with --install -s).
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
ln -sf busybox "$root/bin/sh"
log "resolving shared libraries"
copy_elf_deps "$root" "$out/stage"
# The programs' interpreter (PT_INTERP) is /lib/ld-linux-aarch64.so.1.
[ -e "$root/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1" ] || die "no dynamic loader"
ln -sf aarch64-linux-gnu/ld-linux-aarch64.so.1 "$root/lib/ld-linux-aarch64.so.1"
mkdir -p "$root"/{dev,proc,sys,run,tmp,mnt,root,etc,var/log,var/lib,var/run}
[ "$SET" = dom0 ] && mkdir -p "$root"/{var/log/xen/console,var/lib/xen,var/run/xen,var/lib/xenstored,proc/xen}
rm -rf "$root/usr/lib/xen-4.17/bin/pygrub" "$root/usr/lib/xen-4.17/bin/xenpvnetboot"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) | gzip -6 > "$out/rootfs.cpio.gz"
printf '%s\n' "$pkgs" > "$out/packages.txt"
rm -rf "$out/stage"
mark_done "$out"
prune_cache "rootfs-$SET" 2
log "packed $out/rootfs.cpio.gz ($(du -h "$out/rootfs.cpio.gz" | cut -f1), $(du -sh "$root" | cut -f1) unpacked)"
echo "$out/rootfs.cpio.gz"
