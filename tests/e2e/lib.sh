# Common helpers for the e2e phase scripts (sourced, bash).
#
# Every phase builds into $E2E_CACHE/<phase>/<key>/ where <key> is a sha256 over the versions and
# the inputs that produced it; a finished build has a ".done" stamp, so a second run reuses it.
# $E2E_CACHE defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/xen-virtiod-e2e (outside the repository).

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
E2E_CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xen-virtiod-e2e}
E2E_BUILD=${E2E_BUILD:-$REPO/build/e2e}
E2E_JOBS=${E2E_JOBS:-$(nproc)}
# Xen source version: a 4.17 version whose source files download from the archive (E2E-NOTES.md).
XEN_SRC_VERSION=${XEN_SRC_VERSION:-4.17.5+72-g01140da4e8-1}
LINUX_SRC_PKG=${LINUX_SRC_PKG:-linux-source-6.12}
CROSS=aarch64-linux-gnu-
# The emulated machine (E2E-NOTES.md): QEMU virt with EL2 and GICv3, TCG.
E2E_MACHINE=${E2E_MACHINE:-virt,virtualization=on,gic-version=3}
E2E_CPU=${E2E_CPU:-cortex-a57}
E2E_SMP=${E2E_SMP:-2}
E2E_MEM=${E2E_MEM:-2048}
E2E_XEN_EXTRA=${E2E_XEN_EXTRA:-}
mkdir -p "$E2E_CACHE" "$E2E_BUILD"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

: "${E2E_PHASE:=e2e}"
_phase_t0=$(date +%s)

# log MSG...: progress line with the seconds since this phase started.
log() { printf '[e2e %-8s %4ds] %s\n' "$E2E_PHASE" $(( $(date +%s) - _phase_t0 )) "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# sha256 of files (contents and names), stdin-free.
hash_files() { local f; for f in "$@"; do printf '%s\n' "${f#"$REPO"/}"; sha256sum < "$f"; done | sha256sum | cut -c1-16; }
# key STRING...: short sha256 of its arguments.
key_of() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

# apt with a wait on the lock (other users of this machine run apt too).
apt_get() {
	local i
	for i in $(seq 1 60); do
		if $SUDO apt-get -o DPkg::Lock::Timeout=600 "$@"; then return 0; fi
		# apt-get update has no lock timeout of its own on every version: retry while locked.
		if fuser /var/lib/apt/lists/lock /var/lib/dpkg/lock-frontend >/dev/null 2>&1; then
			log "apt is busy, waiting"; sleep 5
		else
			return 1
		fi
	done
	return 1
}

# Cache directory helpers: cache_dir PHASE KEY -> path; is_done DIR; mark_done DIR.
cache_dir() { printf '%s/%s/%s\n' "$E2E_CACHE" "$1" "$2"; }
is_done() { [ -f "$1/.done" ]; }
mark_done() { date -u +%FT%TZ > "$1/.done"; }
# Keep only the newest N entries of a phase's cache (old keys pile up otherwise).
prune_cache() {
	local dir="$E2E_CACHE/$1" keep=${2:-2}
	[ -d "$dir" ] || return 0
	ls -1t "$dir" | tail -n +$((keep + 1)) | while read -r old; do rm -rf "${dir:?}/$old"; done
}

# ---- arm64 Debian packages -------------------------------------------------------------------
# Packages built from Xen's source are pinned to the hypervisor's version (tools must match it).
is_xen_pkg() { [[ $1 =~ ^(libxen|xen-utils|xenstore-utils|xen-hypervisor) ]]; }

# resolve_arm64 ROOT...: prints "name=version" for the roots and the shared-library packages
# they depend on (recursively; lib*/zlib1g only: binaries' other dependencies, perl, python, udev,
# are not wanted in an initramfs). Cached per state of apt's lists.
resolve_arm64() {
	local stamp f out
	stamp=$(stat -c '%n %Y' /var/lib/apt/lists/*_Packages* 2>/dev/null | sha256sum | cut -c1-16)
	f=$E2E_CACHE/resolve/$(key_of "$stamp" "$XEN_SRC_VERSION" "$@").txt
	if [ -s "$f" ]; then cat "$f"; return 0; fi
	mkdir -p "$E2E_CACHE/resolve"
	local names
	names=$( { printf '%s\n' "$@";
		apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
			--no-replaces --no-enhances $(printf '%s:arm64 ' "$@") 2>/dev/null |
		grep -E '^(lib[^ ]*|zlib1g):arm64$' | sed 's/:arm64$//' |
		grep -vE '^lib(python|perl)|-(dev|perl|doc)$'; } | sort -u)
	out=$(apt-cache show --no-all-versions $(printf '%s:arm64 ' $names) 2>/dev/null |
		awk '/^Package: /{p=$2} /^Version: /{print p "=" $2}' | sort -u |
		while IFS== read -r n v; do
			if is_xen_pkg "$n"; then v=$XEN_SRC_VERSION; fi
			echo "$n=$v"
		done)
	for n in "$@"; do grep -q "^$n=" <<<"$out" || die "arm64 package $n not found by apt"; done
	printf '%s\n' "$out" > "$f.tmp" && mv "$f.tmp" "$f"
	cat "$f"
}

# fetch_arm64 LIST...: download name=version (from resolve_arm64) into $E2E_CACHE/debs once;
# prints the .deb paths.
fetch_arm64() {
	local pool=$E2E_CACHE/debs want=() nv n v fn
	mkdir -p "$pool"
	for nv in "$@"; do
		n=${nv%%=*}; v=${nv#*=}
		fn=$pool/${n}_${v//:/%3a}_arm64.deb
		[ -s "$fn" ] || want+=("$n:arm64=$v")
	done
	if [ ${#want[@]} -gt 0 ]; then
		log "downloading ${#want[@]} arm64 packages"
		(cd "$pool" && apt_get -o APT::Sandbox::User=root download -qq "${want[@]}" >/dev/null) ||
			die "apt-get download failed for: ${want[*]}"
	fi
	for nv in "$@"; do
		n=${nv%%=*}; v=${nv#*=}
		fn=$pool/${n}_${v//:/%3a}_arm64.deb
		[ -s "$fn" ] || die "missing after download: $fn"
		echo "$fn"
	done
}

# copy_elf_deps ROOTFS STAGING: copy into ROOTFS every shared library that ROOTFS's ELF files need,
# found in STAGING (an extracted set of packages), recursively; fails naming any soname not found.
LIBDIRS="lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu lib usr/lib"
copy_elf_deps() {
	local root=$1 stage=$2 changed=1 f so d found missing=""
	local -A seen=()
	while [ "$changed" = 1 ]; do
		changed=0
		while IFS= read -r f; do
			[ -n "${seen[$f]:-}" ] && continue
			seen[$f]=1
			local dyn dirs
			dyn=$(${CROSS}readelf -d "$f" 2>/dev/null || true)
			# RUNPATH/RPATH directories (absolute ones) are searched too, e.g. librados' ceph/.
			dirs="$LIBDIRS $(sed -n 's/.*(R[UN]*PATH).*\[\(.*\)\]/\1/p' <<<"$dyn" | tr ':' ' ' | sed 's|\(^\| \)/|\1|g')"
			for so in $(sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' <<<"$dyn"); do
				found=""
				for d in $dirs; do
					if [ -e "$root/$d/$so" ]; then found=1; break; fi
				done
				[ -n "$found" ] && continue
				for d in $dirs; do
					if [ -e "$stage/$d/$so" ]; then
						mkdir -p "$root/$d"; cp -L "$stage/$d/$so" "$root/$d/$so"
						found=1; changed=1; break
					fi
				done
				[ -n "$found" ] || missing="$missing $so(${f#"$root"/})"
			done
		done < <(find "$root" -type f \( -perm -u+x -o -name '*.so*' \) -size +1k | sort)
	done
	[ -z "$missing" ] || die "shared libraries not found in the packages:$missing"
}
