# xen-virtiodctl: the control tool (libc only; the protocol is daemon/control.h).
CTL := $(BUILD)/xen-virtiodctl
ALL_TARGETS += $(CTL)
all: $(CTL)

$(CTL): $(call obj,ctl/xen-virtiodctl.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

# tests/integration/test_control runs the tool against the sim daemon.
$(BUILD)/obj/tests/integration/test_control.o: CPPFLAGS += -DXVD_CTL=\"$(abspath $(CTL))\"
$(BUILD)/tests/integration/test_control: | $(CTL)
