#!/bin/sh
# scripts/run-tests.sh itself: a test that leaves a process behind holding its output (a forked
# helper of a test that failed) neither hangs the run nor survives it, and a test that fails
# still counts as failed. (Before, the run waited for the output's end: for ever.)
set -u
cd "$(dirname "$0")/../.." || exit 1
dir=$(mktemp -d /tmp/test_run_tests.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
mark="xvd-run-tests-leftover-$$"
cat > "$dir/leaky" <<EOS
#!/bin/sh
sh -c 'sleep 300; echo $mark' &
echo leaky done
EOS
printf '#!/bin/sh\necho failing; exit 3\n' > "$dir/failing"
chmod +x "$dir/leaky" "$dir/failing"
out=$(timeout 60 sh scripts/run-tests.sh "$dir" "$dir/leaky" "$dir/failing"); rc=$?
fail() { echo "test_run_tests: $*"; echo "$out"; exit 1; }
[ "$rc" -ne 124 ] || fail "run-tests.sh hung on a test's leftover process"
[ "$rc" -eq 1 ] || fail "exit status $rc, not 1 (one test failed)"
[ "$(cat "$dir/test-summary")" = "1 1" ] || fail "summary $(cat "$dir/test-summary"), not 1 1"
if pgrep -f "echo $mark" >/dev/null; then pkill -f "echo $mark"; fail "the leftover survived the run"; fi
grep -q "leaky: processes it left behind were killed" "$dir/test-log" || fail "no note in test-log"
echo "test_run_tests: a leftover process was killed, the run went on, the failure counted"
