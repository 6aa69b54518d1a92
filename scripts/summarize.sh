#!/bin/sh
# Add up test-summary files; the last line printed is "N passed, N failed".
passed=0; failed=0
for f in "$@"; do
	if [ -s "$f" ]; then
		read -r p fl < "$f"
	else
		echo "missing result: $f (its pass did not run to the end)"; p=0; fl=1
	fi
	passed=$((passed + p)); failed=$((failed + fl))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
