# libFuzzer targets over the virtio core (tests/fuzz/fuzz_*.c), built with clang from the
# sources directly (never gcc objects), with ASan+UBSan.
#
#   make fuzz                    every target for FUZZ_SECONDS (default 60); fails on any crash
#   make check-run (SAN=0)       each target for FUZZ_QUICK_SECONDS as one test (fuzz-quick)
#
# Seeds: tests/fuzz/corpus/<target>/ (tests/fuzz/gen-corpus.py writes them). New inputs and
# crash artifacts go under $(BUILD)/fuzz, never into the repository.

FUZZ_CC            ?= clang
FUZZ_SECONDS       ?= 60
FUZZ_QUICK_SECONDS ?= 3
FUZZ_DIR   := $(BUILD)/fuzz
FUZZ_NAMES := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS  := $(addprefix $(FUZZ_DIR)/,$(FUZZ_NAMES))
FUZZ_SRCS  := devices/virtio_mmio.c devices/virtqueue.c devices/iov.c devices/rng.c \
	      lib/log.c lib/testpoint.c tests/lib/gmem_flat.c
FUZZ_FLAGS := -I. -D_GNU_SOURCE -D__XEN_TOOLS__ -std=c11 -g -O1 -Wall -Wextra -Werror \
	      -fno-strict-aliasing -fno-omit-frame-pointer \
	      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_SRCS) $(wildcard devices/*.h ioreq/gmem.h tests/lib/gmem_flat.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SRCS) $(FUZZ_EXTRA_$*) -lev $(FUZZ_LIBS_$*)

# Targets beyond the virtio core: their extra sources (also prerequisites) and libraries.
FUZZ_EXTRA_config   := config/config.c
FUZZ_LIBS_config    := $(shell $(PKG) --libs inih 2>/dev/null)
FUZZ_EXTRA_blk      := devices/blk.c devices/blk_nbd_none.c devices/blk_rbd_none.c
FUZZ_LIBS_blk       := $(shell $(PKG) --libs liburing 2>/dev/null)
FUZZ_EXTRA_i2c      := devices/i2c.c devices/i2c_sim.c
FUZZ_EXTRA_xenstore :=
FUZZ_LIBS_xenstore  := $(shell $(PKG) --libs xenstore 2>/dev/null)
FUZZ_EXTRA_net      := devices/net.c
FUZZ_EXTRA_console  := devices/console.c devices/console_ring.c devices/console_log.c
FUZZ_EXTRA_gpio     := devices/gpio.c devices/gpio_sim.c devices/gpio_ctl.c devices/gpio_backend.c \
                       devices/gpio_chip.c
FUZZ_LIBS_gpio      := $(shell $(PKG) --libs libgpiod 2>/dev/null || echo -lgpiod)
FUZZ_EXTRA_vsock    := devices/vsock.c devices/console_ring.c
$(FUZZ_DIR)/fuzz_config: $(FUZZ_EXTRA_config) config/config.h
$(FUZZ_DIR)/fuzz_blk: $(FUZZ_EXTRA_blk) tests/fuzz/fuzz_blk_i2c_chains.h
$(FUZZ_DIR)/fuzz_i2c: $(FUZZ_EXTRA_i2c) tests/fuzz/fuzz_blk_i2c_chains.h
$(FUZZ_DIR)/fuzz_xenstore: ioreq/xenstore.c ioreq/xen.h ioreq/xen_priv.h
$(FUZZ_DIR)/fuzz_net: $(FUZZ_EXTRA_net)
$(FUZZ_DIR)/fuzz_console: $(FUZZ_EXTRA_console)
$(FUZZ_DIR)/fuzz_gpio: $(FUZZ_EXTRA_gpio) tests/fuzz/fuzz_mq.h
$(FUZZ_DIR)/fuzz_vsock: $(FUZZ_EXTRA_vsock) tests/fuzz/fuzz_mq.h

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@sh tests/fuzz/run-fuzz.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_NAMES)

# The quick pass joins the plain test run only: the targets carry their own sanitizers.
# check-run's prerequisites were expanded before this fragment was read: name ours explicitly.
ifeq ($(SAN),0)
TESTS += $(FUZZ_DIR)/fuzz-quick
check-run: $(FUZZ_DIR)/fuzz-quick
endif

$(FUZZ_DIR)/fuzz-quick: $(FUZZ_BINS) tests/fuzz/run-fuzz.sh tests/fuzz/fuzz.mk
	@mkdir -p $(dir $@)
	@printf '#!/bin/sh\ncd "%s" && exec sh tests/fuzz/run-fuzz.sh "%s" %s %s\n' \
		"$(CURDIR)" "$(FUZZ_DIR)" "$(FUZZ_QUICK_SECONDS)" "$(FUZZ_NAMES)" > $@
	@chmod +x $@
