#!/bin/sh
# Static analysis of the production sources (daemon/ config/ devices/ ioreq/ ctl/), run by
# `make check` (plain pass; scripts/static.mk) and therefore by CI:
#   1. cppcheck   --enable=warning,portability,performance, suppressions in .cppcheck
#   2. clang-tidy  checks in .clang-tidy, single false positives in .clang-tidy-suppressions
#   3. gcc -fanalyzer, minus the four warning classes gcc 12 gets wrong on this code (below)
#   4. systemd units: `systemd-analyze verify` clean, `security` exposure <= 3.0
# Exits 0 when every step is clean; prints each finding and exits 1 otherwise. A tool that is
# not installed is reported and its step fails (scripts/install-deps.sh installs them), except
# systemd-analyze, which a container may lack: that step is then skipped with a notice.
# STATIC_JOBS=N sets the parallelism (default: the number of CPUs).
set -u
cd "$(dirname "$0")/.." || exit 2
jobs=${STATIC_JOBS:-$(nproc 2>/dev/null || echo 2)}
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
srcs=$(ls daemon/*.c config/*.c devices/*.c ioreq/*.c ctl/*.c)
pkgs="xendevicemodel xenforeignmemory xenevtchn xengnttab xenstore inih liburing libsystemd libseccomp"
# The Makefile's CPPFLAGS and C standard (the quotes around the version stay literal); the NBD
# engine is analysed (XVD_HAVE_NBD) when libnbd is installed, its stand-in otherwise.
nbd=$(pkg-config --exists libnbd 2>/dev/null && echo "-DXVD_HAVE_NBD $(pkg-config --cflags libnbd)")
flags="-std=c11 -I. -D_GNU_SOURCE -D__XEN_TOOLS__ -DXVD_VERSION=\"static\" $(pkg-config --cflags $pkgs 2>/dev/null) $nbd"
fail=0
started=$(date +%s)

need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	echo "static: $1 is not installed (sh scripts/install-deps.sh)"
	fail=1
	return 1
}

# ---- 1. cppcheck ----
if need cppcheck; then
	if cppcheck --enable=warning,portability,performance --error-exitcode=1 --inline-suppr \
		--suppressions-list=.cppcheck --std=c11 --library=posix -q -j "$jobs" \
		-I. -D_GNU_SOURCE -D__XEN_TOOLS__ -D__linux__ daemon config devices ioreq ctl \
		> "$tmp/cppcheck" 2>&1; then
		echo "static: cppcheck clean"
	else
		cat "$tmp/cppcheck"
		echo "static: cppcheck FAILED"
		fail=1
	fi
fi

# ---- 2. clang-tidy ----
# Is the diagnostic "FILE LINE CHECKS" listed in .clang-tidy-suppressions?
suppressed() {
	src=$(sed -n "$2p" "$1" 2>/dev/null)
	grep -v '^#' .clang-tidy-suppressions | grep -v '^$' | while IFS='|' read -r sf sc st _why; do
		[ "$sf" = "$1" ] || continue
		case ",$3" in *",$sc"*) ;; *) continue ;; esac
		case "$src" in *"$st"*) echo yes; break ;; esac
	done | grep -q yes
}

if need clang-tidy; then
	printf '%s\n' $srcs | xargs -P "$jobs" -I{} sh -c \
		'clang-tidy -quiet "$1" -- $2 > "$3/tidy.$(echo "$1" | tr / _)" 2>&1' _ {} "$flags" "$tmp"
	cat "$tmp"/tidy.* | sed "s|^$(pwd)/||" |
		grep -E '^[^ :]+:[0-9]+:[0-9]+: (warning|error): ' | sort -u > "$tmp/tidy-all"
	: > "$tmp/tidy-left"
	nsup=0
	while IFS= read -r d; do
		file=${d%%:*}; rest=${d#*:}; line=${rest%%:*}
		checks=$(printf '%s\n' "$d" | sed -n 's/.*\[\([^]]*\)\]$/\1/p' | sed 's/,-warnings-as-errors//')
		if [ -n "$checks" ] && suppressed "$file" "$line" "$checks"; then
			nsup=$((nsup + 1))
		else
			printf '%s\n' "$d" >> "$tmp/tidy-left"
		fi
	done < "$tmp/tidy-all"
	# A file clang-tidy could not process at all (its errors are in the list too, normally).
	grep -h 'Error while processing' "$tmp"/tidy.* >> "$tmp/tidy-left"
	if [ -s "$tmp/tidy-left" ]; then
		cat "$tmp/tidy-left"
		echo "static: clang-tidy FAILED: $(wc -l < "$tmp/tidy-left") finding(s)" \
			"(fix, or list a false positive in .clang-tidy-suppressions with the reason)"
		fail=1
	else
		echo "static: clang-tidy clean ($nsup listed false positives suppressed)"
	fi
fi

# ---- 3. gcc -fanalyzer ----
# gcc 12's analyzer reports, on this code, only false positives of four kinds: leaks through
# container_of() (it loses the object when the pointer is offset back), NULL dereferences and
# uninitialized reads on paths that an earlier check excludes (it does not track the relation
# between a count and a pointer), and NULL to memcpy guarded by a zero length. The other
# analyzer checks (double free, use after free, free of a non-heap pointer, file leaks, ...)
# stay on and are errors.
analyzer_off="-Wno-analyzer-malloc-leak -Wno-analyzer-null-dereference \
-Wno-analyzer-use-of-uninitialized-value -Wno-analyzer-null-argument"
if need gcc; then
	if printf '%s\n' $srcs | xargs -P "$jobs" -I{} sh -c \
		'gcc $2 -O2 -fanalyzer $3 -Werror -c -o /dev/null "$1"' _ {} "$flags" "$analyzer_off" \
		> "$tmp/analyzer" 2>&1; then
		echo "static: gcc -fanalyzer clean"
	else
		cat "$tmp/analyzer"
		echo "static: gcc -fanalyzer FAILED"
		fail=1
	fi
fi

# ---- 4. systemd units ----
if command -v systemd-analyze >/dev/null 2>&1; then
	# verify wants the commands to exist: point them at true(1) in a copy.
	true_bin=$(command -v true)
	for u in systemd/*.service; do
		sed -e "s|^ExecStart=[^ ]*|ExecStart=$true_bin|" \
		    -e "s|^ExecReload=[^ ]*|ExecReload=$true_bin|" "$u" > "$tmp/$(basename "$u")"
	done
	if systemd-analyze verify --man=no "$tmp"/*.service > "$tmp/verify" 2>&1 &&
	   [ ! -s "$tmp/verify" ]; then
		echo "static: systemd-analyze verify clean"
	else
		cat "$tmp/verify"
		echo "static: systemd-analyze verify FAILED"
		fail=1
	fi
	for u in systemd/*.service; do
		# --threshold is on the 0..100 scale: 30 is an exposure of 3.0.
		if systemd-analyze security --offline=true --threshold=30 "$u" > "$tmp/sec" 2>&1; then
			echo "static: $(grep 'Overall exposure' "$tmp/sec" | sed 's/^→ //')"
		else
			grep -E '✗|Overall' "$tmp/sec"
			echo "static: $u: exposure above 3.0"
			fail=1
		fi
	done
else
	echo "static: systemd-analyze not installed: unit checks skipped"
fi

echo "static: done in $(( $(date +%s) - started )) s"
exit $fail
