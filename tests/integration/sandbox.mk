# test_sandbox loads a test-only shared object into the sim daemon (LD_PRELOAD) that makes a
# forbidden syscall on SIGUSR2; built without sanitizers (the daemon's ASan runtime must come
# first, so the SAN pass does not use it: sanitizer builds run without the filter anyway).
SANDBOX_PRELOAD := $(BUILD)/tests/integration/sandbox_preload.so

$(SANDBOX_PRELOAD): tests/integration/sandbox_preload.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -O2 -fPIC -shared -o $@ $<

$(BUILD)/tests/integration/test_sandbox: $(SANDBOX_PRELOAD)
$(BUILD)/obj/tests/integration/test_sandbox.o: \
	CPPFLAGS += -DXVD_SANDBOX_PRELOAD=\"$(abspath $(SANDBOX_PRELOAD))\"
