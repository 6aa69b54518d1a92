# Benchmarks: `make bench` builds every tests/bench/*_bench.c (linked like the integration tests:
# the xensim guest library, the test helpers and the core, with the sim daemon's path compiled
# in) and runs each one. A benchmark prints one line per case:
#   BENCH <name> value=<v> unit=<u> baseline=<b> ratio=<r>
# To add a case, add a tests/bench/<name>_bench.c (or append a command to BENCH_CMDS).
# BENCH_* environment variables tune the runs (see each benchmark's header comment).
#
# xensim.mk is read after this fragment, so its targets are named by path here.

BENCH_SRCS := $(wildcard tests/bench/*_bench.c)
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/tests/bench/%,$(BENCH_SRCS))
BENCH_SIM  := $(BUILD)/sim/xen-virtiod
BENCH_CMDS += $(BENCH_BINS)

.PHONY: bench
bench: $(BENCH_BINS) $(BENCH_SIM)
	@rc=0; for b in $(BENCH_CMDS); do $$b || rc=1; done; exit $$rc

$(BUILD)/obj/tests/bench/%.o: CPPFLAGS += -DXVD_SIM_DAEMON=\"$(abspath $(BENCH_SIM))\"
$(BUILD)/tests/bench/%: $(BUILD)/obj/tests/bench/%.o $(BUILD)/sim/libxsimguest.a \
			$(TLIB_OBJS) $(CORE_LIB) | $(BENCH_SIM)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/sim/libxsimguest.a $(TLIB_OBJS) $(CORE_LIB) \
		$(DEP_LIBS) $(TEST_LIBS) -lpthread


# perf: tests/bench/run.sh runs the same benchmarks, keeps their output in $(BUILD)/bench/bench.log
# and writes $(BUILD)/bench/report.md and the plots (tests/bench/report.sh).
BENCH_CMDS := tests/bench/run.sh
bench: export BENCH_RUN = $(BENCH_BINS)
bench: export BENCH_OUT = $(BUILD)/bench

# blk_bench's rbd cases start their own one-node Ceph cluster with this script.
$(BUILD)/obj/tests/bench/blk_bench.o: CPPFLAGS += -DCEPH_CLUSTER_SH=\"$(abspath tests/lib/ceph-cluster.sh)\"
