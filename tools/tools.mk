# xen-virtiod-settarget: the toolstack helper for a back-end in a driver domain (run in dom0).
# It alone uses libxenctrl (not a stable interface); the daemon never links it.
SETTARGET := $(BUILD)/xen-virtiod-settarget
ALL_TARGETS += $(SETTARGET)
all: $(SETTARGET)

$(SETTARGET): $(call obj,tools/xen-virtiod-settarget.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(shell $(PKG) --libs xencontrol xenstore 2>/dev/null)

# xenctrl.h pulls in Xen's public headers, which use anonymous unions (a GNU extension in C11).
$(call obj,tools/xen-virtiod-settarget.c): CFLAGS += -std=gnu11
