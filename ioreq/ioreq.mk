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
