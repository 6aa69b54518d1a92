# test_cli runs the real daemon binary: tell it where the binary is, and build that first.
# (XVD_DAEMON in the environment overrides the path, e.g. to run it against build/sim/xen-virtiod.)
$(BUILD)/obj/tests/unit/test_cli.o: CPPFLAGS += -DXVD_DAEMON_PATH=\"$(abspath $(DAEMON))\"
$(BUILD)/tests/unit/test_cli: $(DAEMON)

# xen-virtiod-create against a fake xl and daemon.
TESTS += tests/unit/test_create.sh tests/unit/test_run_tests.sh
