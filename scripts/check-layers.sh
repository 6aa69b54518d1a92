#!/bin/sh
# The layers look down only (DESIGN.md §2): daemon -> {ioreq, devices, config} -> lib.
# Prints file:line of every quoted include that reaches a folder its layer may not, and fails.
#   lib/      lib/ only: every folder may include it, it includes nothing of ours
#   config/   lib/, config/
#   ioreq/    lib/, ioreq/: the Xen side knows windows, never what a virtio device is
#   devices/  lib/, config/, devices/, and ioreq/gmem.h (the guest-memory interface) only
#   daemon/   anything: it wires the layers together
set -u
cd "$(dirname "$0")/.." || exit 1
find lib config ioreq devices -name '*.[ch]' | sort | xargs awk '
	BEGIN {
		ok["lib"] = " lib/ "
		ok["config"] = " lib/ config/ "
		ok["ioreq"] = " lib/ ioreq/ "
		ok["devices"] = " lib/ config/ devices/ ioreq/gmem.h "
	}
	/^[ \t]*#[ \t]*include[ \t]*"/ {
		split(FILENAME, part, "/"); layer = part[1]
		inc = $0; sub(/^[^"]*"/, "", inc); sub(/".*$/, "", inc)
		dir = inc; sub(/\/.*$/, "/", dir)
		if (index(ok[layer], " " dir " ") || index(ok[layer], " " inc " "))
			next
		printf "%s:%d: #include \"%s\": %s/ may include only:%s\n", FILENAME, FNR, inc,
		       layer, ok[layer]
		bad = 1
	}
	END {
		if (bad)
			exit 1
		print "check-layers: every include looks down"
	}'
