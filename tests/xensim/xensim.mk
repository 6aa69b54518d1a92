# xensim: drop-in Xen libraries, the sim daemon, the guest-side test library, and the tests
# that run against them. See tests/xensim/README.md.
#
#   $(BUILD)/sim/libxensim.a       the contract functions of libxendevicemodel,
#                                  libxenforeignmemory, libxenevtchn, libxengnttab, libxenstore
#   $(BUILD)/sim/libxsimguest.a    hub + guest side (tests and benchmarks link it)
#   $(BUILD)/sim/xen-virtiod       the daemon's own objects linked against libxensim
#
# Prerequisites of `all` and `check-run` in the Makefile are expanded before this fragment is
# read, so the rules below name ours explicitly; the recipes see the final ALL_TARGETS/TESTS.

XSIM_LIB_SRCS   := $(addprefix tests/xensim/,client.c lib_dm.c lib_fmem.c lib_evtchn.c \
		     lib_gnttab.c lib_xs.c lib_privcmd.c lib_call.c)
XSIM_GUEST_SRCS := $(addprefix tests/xensim/,hub.c store.c guest.c kernel.c)
XSIM_LIB        := $(BUILD)/sim/libxensim.a
XSIM_GUEST_LIB  := $(BUILD)/sim/libxsimguest.a
SIM_DAEMON      := $(BUILD)/sim/xen-virtiod

XSIM_SELF_TESTS := $(patsubst tests/xensim/%.c,$(BUILD)/tests/xensim/%,\
		     $(wildcard tests/xensim/test_*.c))
INTEG_TESTS     := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,\
		     $(wildcard tests/integration/test_*.c))

ALL_TARGETS += $(SIM_DAEMON)
TESTS       += $(XSIM_SELF_TESTS) $(INTEG_TESTS)

all: $(SIM_DAEMON)
check-run: $(SIM_DAEMON) $(XSIM_SELF_TESTS) $(INTEG_TESTS)

$(XSIM_LIB): $(call obj,$(XSIM_LIB_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(XSIM_GUEST_LIB): $(call obj,$(XSIM_GUEST_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The same objects as $(DAEMON), with xensim in place of $(XEN_LIBS) and ioreq/privcmd.c.
$(SIM_DAEMON): $(MAIN_OBJ) $(XEN_SIM_OBJS) $(CORE_LIB) $(XSIM_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(XEN_SIM_OBJS) $(CORE_LIB) $(XSIM_LIB) $(DEP_LIBS)

# Self-tests call the drop-in functions directly (from a forked child) against the hub.
$(BUILD)/tests/xensim/%: $(BUILD)/obj/tests/xensim/%.o $(XSIM_GUEST_LIB) $(XSIM_LIB) \
			 $(TLIB_OBJS) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(XSIM_GUEST_LIB) $(XSIM_LIB) $(TLIB_OBJS) $(CORE_LIB) \
		$(DEP_LIBS) $(TEST_LIBS) -lpthread

# Integration tests run the real sim daemon; its path is compiled in (absolute, so a test can
# run from any directory).
$(BUILD)/obj/tests/integration/%.o: CPPFLAGS += -DXVD_SIM_DAEMON=\"$(abspath $(SIM_DAEMON))\"
$(BUILD)/tests/integration/%: $(BUILD)/obj/tests/integration/%.o $(XSIM_GUEST_LIB) \
			      $(TLIB_OBJS) $(CORE_LIB) | $(SIM_DAEMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(XSIM_GUEST_LIB) $(TLIB_OBJS) $(CORE_LIB) $(DEP_LIBS) \
		$(TEST_LIBS) -lpthread

# Keep the test objects (make would delete them as intermediates and rebuild every time).
