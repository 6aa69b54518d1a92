# xen-virtiod build. Everything lands under $(BUILD) (default build/).
#
#   make              build/xen-virtiod (real Xen libraries) and build/sim/xen-virtiod (xensim)
#   make check        every test, once plain and once under ASan+UBSan; last line "N passed, N failed"
#   make install      PREFIX=/usr/local DESTDIR= (debian/rules: PREFIX=/usr, units in /lib)
#   make clean
#
# Sub-makefiles (*.mk next to what they build) add targets and tests; see the include below.

VERSION := 0.1.0
BUILD   ?= build
SAN     ?= 0
PREFIX  ?= /usr/local
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/xen-virtiod
EXAMPLEDIR ?= $(DOCDIR)
UNITDIR ?= $(PREFIX)/lib/systemd/system

CC      ?= gcc
PKG     ?= pkg-config
XEN_PKGS := xendevicemodel xenforeignmemory xenevtchn xengnttab xenstore xencall

CPPFLAGS += -I. -D_GNU_SOURCE -D__XEN_TOOLS__ -DXVD_VERSION=\"$(VERSION)\"
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -Werror -MMD -MP -fno-strict-aliasing
ifeq ($(SAN),1)
CFLAGS   += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=address,undefined
endif

XEN_CFLAGS := $(shell $(PKG) --cflags $(XEN_PKGS) 2>/dev/null)
XEN_LIBS   := $(shell $(PKG) --libs $(XEN_PKGS) 2>/dev/null)
DEP_CFLAGS := $(shell $(PKG) --cflags inih liburing libsystemd 2>/dev/null)
DEP_LIBS   := -lev $(shell $(PKG) --libs inih liburing libsystemd 2>/dev/null)
# NBD disks (nbd = URI) when libnbd is there (NBD=0 leaves it out: it brings GnuTLS and libxml2
# along); without it such a disk fails at start and says so (devices/blk_nbd_none.c).
NBD        ?= $(shell $(PKG) --exists libnbd 2>/dev/null && echo 1 || echo 0)
ifeq ($(NBD),1)
DEP_CFLAGS += -DXVD_HAVE_NBD $(shell $(PKG) --cflags libnbd 2>/dev/null)
DEP_LIBS   += $(shell $(PKG) --libs libnbd 2>/dev/null)
endif
# Ceph RBD disks (rbd = POOL/IMAGE) when librbd is there (RBD=0 leaves it out: librados brings
# the Ceph common library, Boost and their threads along); without it such a disk fails at start
# and says so (devices/blk_rbd_none.c). librbd ships no pkg-config file: a program that includes
# its header and links against it decides (the header alone is not enough: a cross compiler
# finds the host's /usr/include, and the target's sysroot may still lack the libraries).
RBD        ?= $(shell printf '\043include <rbd/librbd.h>\nint main(void) { rbd_version(0, 0, 0); return 0; }\n' | \
		$(CC) $(CPPFLAGS) $(LDFLAGS) -x c - -o /dev/null -lrbd -lrados >/dev/null 2>&1 && echo 1 || echo 0)
# Built against the headers only: devices/blk_rbd.c opens librbd.so.1 with the first rbd disk.
ifeq ($(RBD),1)
DEP_CFLAGS += -DXVD_HAVE_RBD
endif
TEST_LIBS  := $(shell $(PKG) --libs cmocka 2>/dev/null)
CPPFLAGS   += $(XEN_CFLAGS) $(DEP_CFLAGS)

# Xen-free code: the virtio core, the devices, the configuration, the daemon's wiring.
CORE_SRCS := $(wildcard lib/*.c devices/*.c config/*.c) $(filter-out daemon/main.c,$(wildcard daemon/*.c))
# The only code that talks to Xen.
XEN_SRCS  := $(wildcard ioreq/*.c)
# Test helpers shared by unit, integration and fuzz tests (never in the daemon).
TLIB_SRCS := $(wildcard tests/lib/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
CORE_OBJS := $(call obj,$(CORE_SRCS))
XEN_OBJS  := $(call obj,$(XEN_SRCS))
# The same without ioreq/privcmd.c, whose functions xensim's lib_privcmd.c provides instead.
XEN_SIM_OBJS := $(filter-out $(call obj,ioreq/privcmd.c),$(XEN_OBJS))
TLIB_OBJS := $(call obj,$(TLIB_SRCS))
MAIN_OBJ  := $(call obj,daemon/main.c)
# An archive, so a test links only the modules it uses.
CORE_LIB  := $(BUILD)/libcore.a

DAEMON := $(BUILD)/xen-virtiod
# Sub-makefiles add to these.
ALL_TARGETS := $(DAEMON)
TESTS       :=
CHECK_DEPS  :=

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
TESTS      += $(UNIT_TESTS)

.DEFAULT_GOAL := all
# Fragments next to what they build add targets and tests. Included before the rules below so
# that their additions to ALL_TARGETS and TESTS are in those rules' prerequisites.
-include $(wildcard */*.mk tests/*/*.mk)

.PHONY: all check check-run install clean deps
# Keep objects that pattern chains would treat as intermediate (and delete after each build).
.SECONDARY:
all: $(ALL_TARGETS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(CORE_LIB): $(CORE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(DAEMON): $(MAIN_OBJ) $(XEN_OBJS) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(XEN_OBJS) $(CORE_LIB) $(XEN_LIBS) $(DEP_LIBS)

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(TLIB_OBJS) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(TLIB_OBJS) $(CORE_LIB) $(DEP_LIBS) $(TEST_LIBS)

deps:
	@sh scripts/install-deps.sh

# One pass of the tests in $(BUILD); writes $(BUILD)/test-summary.
check-run: all $(TESTS) $(CHECK_DEPS)
	@sh scripts/run-tests.sh $(BUILD) $(TESTS)

check: deps
	@rm -f build/test-summary build/asan/test-summary
	@$(MAKE) --no-print-directory BUILD=build SAN=0 check-run; \
	 $(MAKE) --no-print-directory BUILD=build/asan SAN=1 check-run; \
	 sh scripts/summarize.sh build/test-summary build/asan/test-summary

install: $(DAEMON) $(CTL) $(SETTARGET)
	install -D -m 0755 $(DAEMON) $(DESTDIR)$(SBINDIR)/xen-virtiod
	install -D -m 0755 $(CTL) $(DESTDIR)$(SBINDIR)/xen-virtiodctl
	install -D -m 0755 $(SETTARGET) $(DESTDIR)$(SBINDIR)/xen-virtiod-settarget
	for f in scripts/xen-virtiod-create; do [ -f $$f ] && install -D -m 0755 $$f $(DESTDIR)$(SBINDIR)/$$(basename $$f) || true; done
	for f in systemd/*.service; do install -D -m 0644 $$f $(DESTDIR)$(UNITDIR)/$$(basename $$f); done
	# The units name /usr/local/sbin/xen-virtiod; point them at where the binary went.
	sed -i 's|/usr/local/sbin/xen-virtiod|$(SBINDIR)/xen-virtiod|' $(DESTDIR)$(UNITDIR)/xen-virtiod*.service
	for f in man/*.8; do install -D -m 0644 $$f $(DESTDIR)$(MANDIR)/man8/$$(basename $$f); done
	for f in man/*.5; do install -D -m 0644 $$f $(DESTDIR)$(MANDIR)/man5/$$(basename $$f); done
	install -D -m 0644 config/example.ini $(DESTDIR)$(EXAMPLEDIR)/example.ini
	for f in systemd/examples/*.service; do install -D -m 0644 $$f $(DESTDIR)$(EXAMPLEDIR)/$$(basename $$f); done

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
