#!/bin/bash
# Phase "kernel": one arm64 Linux Image for dom0 and guests, from Debian's linux-source-6.12
# (allnoconfig + tests/e2e/kernel.config), and beside it Image-grant: the same tree rebuilt
# incrementally with CONFIG_XEN_VIRTIO_FORCE_GRANT=y (a guest kernel whose virtio devices must use
# grant mappings; scenario "grant"). Key: source package version + fragment + the recipe.
# Output: $E2E_CACHE/kernel/<key>/Image and Image-grant (the path of Image printed on stdout).
set -euo pipefail
E2E_PHASE=kernel
. "$(dirname "$0")/../lib.sh"

ver=$(apt-cache show --no-all-versions "$LINUX_SRC_PKG" 2>/dev/null | sed -n 's/^Version: //p' | head -1)
[ -n "$ver" ] || die "$LINUX_SRC_PKG not known to apt (did phase host run?)"
# The key: source version, fragment, compiler and the recipe below (not this whole file, so that
# an edit of its messages or of the download step does not cost a 5-20 minute rebuild).
RECIPE="allnoconfig; merge_config.sh -m kernel.config; olddefconfig; Image; ARCH=arm64 CROSS_COMPILE=$CROSS;
then scripts/config -e XEN_VIRTIO_FORCE_GRANT; olddefconfig; Image -> Image-grant"
gccv=$(${CROSS}gcc -dumpfullversion 2>/dev/null || echo none)
key=$(key_of "$LINUX_SRC_PKG=$ver" "gcc=$gccv" "$RECIPE" "$(hash_files "$E2E_DIR/kernel.config")")
out=$(cache_dir kernel "$key")
if is_done "$out" && [ -f "$out/Image-grant" ]; then
	log "cached: $out/Image, Image-grant ($LINUX_SRC_PKG $ver)"; echo "$out/Image"; exit 0
fi

src=$E2E_CACHE/linux-src/$ver
if ! is_done "$src"; then
	dl=$E2E_CACHE/downloads; mkdir -p "$dl"
	deb=$(ls "$dl/${LINUX_SRC_PKG}_${ver//:/%3a}_all.deb" 2>/dev/null || true)
	if [ -z "$deb" ]; then
		log "downloading $LINUX_SRC_PKG $ver"
		(cd "$dl" && apt_get -o APT::Sandbox::User=root download -qq "$LINUX_SRC_PKG=$ver")
		deb=$(ls "$dl/${LINUX_SRC_PKG}_"*"_all.deb" | grep -F "_${ver//:/%3a}_" | head -1)
	fi
	log "extracting $(basename "$deb")"
	rm -rf "$src"; mkdir -p "$src.tmp"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$src.tmp" --wildcards './usr/src/*.tar.xz'
	tarball=$(ls "$src.tmp"/usr/src/*.tar.xz | head -1)
	tar -xJf "$tarball" -C "$src.tmp"
	rm -f "$tarball"
	mv "$src.tmp/$(basename "$tarball" .tar.xz)" "$src"; rm -rf "$src.tmp"
	mark_done "$src"
	log "source ready: $src"
fi

rm -rf "$out"; mkdir -p "$out/build"
# Keep RECIPE above in step with these commands.
K="make -s -C $src O=$out/build ARCH=arm64 CROSS_COMPILE=$CROSS"
log "configuring (allnoconfig + kernel.config)"
$K allnoconfig >/dev/null
(cd "$out/build" && ARCH=arm64 CROSS_COMPILE=$CROSS "$src/scripts/kconfig/merge_config.sh" -m -O . .config "$E2E_DIR/kernel.config" >/dev/null)
$K olddefconfig >/dev/null
# Every option the fragment asks for must have survived olddefconfig (a missing dependency drops it).
lost=$(grep -E '^CONFIG_[A-Z0-9_]+=' "$E2E_DIR/kernel.config" | while read -r l; do grep -qxF "$l" "$out/build/.config" || echo "$l"; done)
[ -z "$lost" ] || die "options dropped by kconfig: $(echo $lost)"
log "building Image with $E2E_JOBS jobs (several minutes)"
$K -j"$E2E_JOBS" Image > "$out/build.log" 2>&1 || { tail -30 "$out/build.log" >&2; die "kernel build failed (log: $out/build.log)"; }
cp "$out/build/arch/arm64/boot/Image" "$out/Image"
cp "$out/build/.config" "$out/config"
# The grant-mapping guest kernel: one option more, rebuilt in the same tree (only what depends on
# the option recompiles, then the link: a minute or two, not a second full build).
"$src/scripts/config" --file "$out/build/.config" -e XEN_VIRTIO_FORCE_GRANT
$K olddefconfig >/dev/null
grep -qx 'CONFIG_XEN_VIRTIO_FORCE_GRANT=y' "$out/build/.config" ||
	die "CONFIG_XEN_VIRTIO_FORCE_GRANT=y did not survive olddefconfig"
log "building Image-grant (CONFIG_XEN_VIRTIO_FORCE_GRANT=y, incremental)"
$K -j"$E2E_JOBS" Image > "$out/build-grant.log" 2>&1 ||
	{ tail -30 "$out/build-grant.log" >&2; die "Image-grant build failed (log: $out/build-grant.log)"; }
cp "$out/build/arch/arm64/boot/Image" "$out/Image-grant"
cp "$out/build/.config" "$out/config-grant"
rm -rf "$out/build"
mark_done "$out"
prune_cache kernel 2
log "built $out/Image ($(du -h "$out/Image" | cut -f1)) and $out/Image-grant"
echo "$out/Image"
