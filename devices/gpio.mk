# devices/gpio_chip.c passes a host gpiochip's lines through libgpiod v1 (libgpiod-dev,
# scripts/install-deps.sh). Appended like daemon/sandbox.mk: every link of $(CORE_LIB) may take it.
CPPFLAGS += $(shell $(PKG) --cflags libgpiod 2>/dev/null)
DEP_LIBS += $(shell $(PKG) --libs libgpiod 2>/dev/null || echo -lgpiod)
