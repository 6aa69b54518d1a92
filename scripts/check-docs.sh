#!/bin/sh
# docs/ARCHITECTURE.md names functions along the path of a register access and a block request:
# each `name()` it names must still exist in the tree's C sources, so the walk-through stays
# true. Prints the missing names and fails.
set -u
cd "$(dirname "$0")/.." || exit 1
doc=docs/ARCHITECTURE.md
missing=""
for f in $(grep -o '`[A-Za-z_][A-Za-z0-9_]*()`' "$doc" | tr -d '`()' | sort -u); do
	grep -rqw --include='*.c' --include='*.h' "$f" lib config ioreq devices daemon tests ||
		missing="$missing $f"
done
if [ -n "$missing" ]; then
	echo "$doc names functions that no longer exist:$missing"
	exit 1
fi
echo "check-docs: every function $doc names exists"
