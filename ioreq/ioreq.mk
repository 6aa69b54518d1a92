# ioreq/: an in-process test of the guest-memory cache against the xensim drop-in libraries.
# It sits with the integration tests (so check-run builds and runs it) but links gmem_xen.o and
# libxensim itself; this explicit rule wins over the integration tests' pattern rule. The xensim
# archives are named by path: their variables are defined by a fragment read after this one.
XEN_GMEM_TEST := $(BUILD)/tests/integration/test_xen_gmem
$(XEN_GMEM_TEST): $(BUILD)/obj/tests/integration/test_xen_gmem.o $(call obj,ioreq/gmem_xen.c) \
		  $(BUILD)/sim/libxsimguest.a $(BUILD)/sim/libxensim.a $(TLIB_OBJS) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS) $(TEST_LIBS) -lpthread

# The ioreq server's lifecycle in process (open/add/start/close and their failure paths).
XEN_LIFECYCLE_TEST := $(BUILD)/tests/integration/test_xen_lifecycle
$(XEN_LIFECYCLE_TEST): $(BUILD)/obj/tests/integration/test_xen_lifecycle.o $(XEN_SIM_OBJS) \
		       $(BUILD)/sim/libxsimguest.a $(BUILD)/sim/libxensim.a $(TLIB_OBJS) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS) $(TEST_LIBS) -lpthread

# The slot protocol on its own (ioreq/slot.c, with privcmd.c's no-op race point).
SLOT_TEST := $(BUILD)/tests/unit/test_slot
$(SLOT_TEST): $(BUILD)/obj/tests/unit/test_slot.o $(call obj,ioreq/slot.c ioreq/privcmd.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LIBS)

# The same protocol against the kernel handler's steps in three threads, under ThreadSanitizer
# (its own objects: TSan cannot share a process with ASan, and checks only what it compiled).
# Runs in the plain pass only.
ifneq ($(SAN),1)
SLOT_TSAN_TEST := $(BUILD)/tests/tsan/test_slot_threads
$(SLOT_TSAN_TEST): tests/tsan/test_slot_threads.c ioreq/slot.c ioreq/privcmd.c ioreq/slot.h \
		   tests/xensim/kernel_handler.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -std=c11 -Wall -Wextra -Werror -O1 -g -fsanitize=thread \
		-o $@ tests/tsan/test_slot_threads.c ioreq/slot.c ioreq/privcmd.c $(TEST_LIBS) -lpthread
TESTS += $(SLOT_TSAN_TEST)
endif
