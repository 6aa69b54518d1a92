/*
 * What devices/gpio.c asks of the lines behind a virtio-gpio device, and two answers:
 * simulated lines (devices/gpio_sim.h) and a host chip's lines through libgpiod
 * (devices/gpio_chip.h).
 *
 * The guest-visible state (direction, output latch, interrupt type, latched edge, last level)
 * lives in struct gpio_sim_state for both, which the device reads directly; a backend's hooks
 * are called before the device changes that state, so a refusal leaves it as it was.
 * Line numbers passed to the hooks are below n (the device checked).
 */
#ifndef XVD_GPIO_BACKEND_H
#define XVD_GPIO_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct ev_loop;
struct gpio_backend;
struct gpio_sim_state;

struct gpio_backend_ops {
	const char *kind;                                   /* "sim", "chip" */
	/* The guest sets dir (GPIO_DIR_*): 0, or -errno and nothing changed (ERR). */
	int (*set_direction)(struct gpio_backend *b, unsigned line, uint8_t dir);
	/* The guest drives v (0/1): 0 or -errno. Called whatever the direction. */
	int (*set_value)(struct gpio_backend *b, unsigned line, unsigned v);
	/* What line reads now: 0/1, or -errno (the guest gets ERR). */
	int (*get_value)(struct gpio_backend *b, unsigned line);
	/* The guest sets the interrupt type (GPIO_IRQ_*, valid): 0 or -errno. */
	int (*set_irq_type)(struct gpio_backend *b, unsigned line, uint8_t type);
	/* After a change: latch edges into st->latched, refresh st->level. Returns changed lines. */
	unsigned (*scan)(struct gpio_backend *b);
	/* The guest's side back to power-on (device reset): lines released, watchers stopped. */
	void (*reset)(struct gpio_backend *b);
	/* SET_DIRECTION NONE: the line's state discarded, the line released. */
	void (*release)(struct gpio_backend *b, unsigned line);
	/* Event watchers on (device serving) or off (stopped, NEEDS_RESET). NULL: none. */
	void (*watch)(struct gpio_backend *b, bool on);
	/* The host drives line (simulated lines only; NULL: the hardware does). */
	int (*host_set)(struct gpio_backend *b, unsigned line, unsigned v);
	void (*destroy)(struct gpio_backend *b);
};

struct gpio_backend {
	const struct gpio_backend_ops *ops;
	unsigned n;                                     /* lines the guest sees */
	char (*name)[CONFIG_GPIO_NAME_MAX];             /* n names, "" for none */
	struct gpio_sim_state *st;
	struct ev_loop *loop;                           /* where watchers run (NULL: none) */
	/* Set by the device: line events arrived outside a request (edge latched, level read). */
	void (*changed)(struct gpio_backend *b, void *opaque);
	void *opaque;
};

/* The line called name[0..len), or -1. */
int gpio_backend_find(const struct gpio_backend *b, const char *name, size_t len);

/*
 * The names block the guest fetches with GET_LINE_NAMES: each name NUL-terminated, in line
 * order. Returns its size; writes it to buf when buf is not NULL (size bytes available).
 */
size_t gpio_backend_names(const struct gpio_backend *b, uint8_t *buf, size_t size);

#endif
