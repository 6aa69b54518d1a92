# Static analysis (cppcheck, clang-tidy, gcc -fanalyzer, systemd unit checks) as one test of
# the plain pass of `make check`: the sanitizer pass would only repeat it.
ifneq ($(SAN),1)
TESTS += scripts/static-analysis.sh
endif

# The include graph points down only (scripts/check-layers.sh), and docs/ARCHITECTURE.md names
# only functions that exist (scripts/check-docs.sh): cheap, and wrong in both passes alike, so
# they run in the plain one.
ifneq ($(SAN),1)
TESTS += scripts/check-layers.sh scripts/check-docs.sh
endif
