#!/bin/sh
# Build the xen-virtiod Debian package with dpkg-buildpackage, in a copy of the tree under
# build/deb/<arch>/ (dpkg-buildpackage writes its results next to the source tree: they land
# there, never in the checkout or its parent).
#
#   scripts/build-deb.sh                 native: build/deb/<arch>/xen-virtiod_<version>_<arch>.deb
#   scripts/build-deb.sh arm64 SYSROOT   cross (dpkg-buildpackage -aarm64) against SYSROOT, a
#                                        directory of arm64 packages unpacked with dpkg-deb -R
#                                        (libraries and their DEBIAN/ control files)
#
# Why a sysroot for the cross build: libxen-dev is not Multi-Arch: same, so libxen-dev:arm64
# cannot be installed beside the native one that make check uses; the build dependencies are
# therefore checked in the sysroot (dpkg-buildpackage -d), pkg-config looks there, and
# dpkg-shlibdeps reads the arm64 packages' shlibs/symbols files from there.
# Prints the .deb's path on stdout.
set -eu
cd "$(dirname "$0")/.."
arch=${1:-$(dpkg-architecture -qDEB_BUILD_ARCH)}
sysroot=${2:-}
version=$(dpkg-parsechangelog -SVersion)
out=$PWD/build/deb/$arch
src=$out/xen-virtiod-$version

rm -rf "$out"
mkdir -p "$src"
# The tree as it is: tracked files and new ones git does not ignore (no build output).
git ls-files -co --exclude-standard -z | xargs -0 tar -cf - | tar -xf - -C "$src"

set -- -us -uc -b
if [ "$arch" != "$(dpkg-architecture -qDEB_BUILD_ARCH)" ]; then
	[ -n "$sysroot" ] || { echo "build-deb: a cross build needs SYSROOT" >&2; exit 64; }
	gnu=$(dpkg-architecture -a"$arch" -qDEB_HOST_MULTIARCH 2>/dev/null)
	L=$sysroot/usr/lib/$gnu
	export PKG_CONFIG=pkg-config
	export PKG_CONFIG_LIBDIR="$L/pkgconfig:$sysroot/usr/share/pkgconfig"
	export PKG_CONFIG_SYSROOT_DIR="$sysroot" PKG_CONFIG_PATH=
	# Appended by dpkg-buildflags to the package's own flags: the sysroot's headers after the
	# cross toolchain's, its libraries for the link.
	export DEB_CPPFLAGS_APPEND="-idirafter $sysroot/usr/include"
	export DEB_LDFLAGS_APPEND="-L$L -L$sysroot/lib/$gnu -Wl,-rpath-link=$L -Wl,-rpath-link=$sysroot/lib/$gnu"
	export XVD_SHLIBDEPS_ARGS="-- -S$sysroot -l$L -l$sysroot/lib/$gnu"
	set -- "$@" -a"$arch" -d
fi
log=$out/build.log
if ! (cd "$src" && dpkg-buildpackage "$@") > "$log" 2>&1; then
	tail -n 30 "$log" >&2
	echo "build-deb: dpkg-buildpackage failed (log: $log)" >&2
	exit 1
fi
deb=$out/xen-virtiod_${version}_$arch.deb
[ -f "$deb" ] || { echo "build-deb: $deb was not built (log: $log)" >&2; exit 1; }
echo "$deb"
