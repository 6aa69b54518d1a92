# Static analysis (cppcheck, clang-tidy, gcc -fanalyzer, systemd unit checks) as one test of
# the plain pass of `make check`: the sanitizer pass would only repeat it.
ifneq ($(SAN),1)
TESTS += scripts/static-analysis.sh
endif

# The include graph points down only (scripts/check-layers.sh): cheap, and wrong in both passes
# alike, so it runs in the plain one.
ifneq ($(SAN),1)
TESTS += scripts/check-layers.sh
endif
