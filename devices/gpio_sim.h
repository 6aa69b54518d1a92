/*
 * Simulated GPIO lines (the backend of devices/gpio.c): what each line reads, given what the
 * guest set (direction, output value), what the host drives (the control socket), the line's
 * bias, and loopbacks (a guest output wired to a guest input). No virtio here: the device asks
 * gpio_sim_scan() after every change which lines saw an interrupt event.
 *
 * What a line reads:
 *  - an output reads the value the guest drives (the latch SET_VALUE wrote);
 *  - an input wired by `loopback = OUT:IN` reads OUT's latch while OUT is an output;
 *  - otherwise what the host drives, which starts at the line's bias (pull-up: 1, else 0).
 */
#ifndef XVD_GPIO_SIM_H
#define XVD_GPIO_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "devices/gpio_backend.h"

#define GPIO_SIM_LINES CONFIG_GPIO_LINES

/* virtio 1.2 §5.17 values, shared with the device. */
#define GPIO_DIR_NONE 0u
#define GPIO_DIR_OUT  1u
#define GPIO_DIR_IN   2u
#define GPIO_IRQ_NONE         0x00u
#define GPIO_IRQ_EDGE_RISING  0x01u
#define GPIO_IRQ_EDGE_FALLING 0x02u
#define GPIO_IRQ_EDGE_BOTH    0x03u
#define GPIO_IRQ_LEVEL_HIGH   0x04u
#define GPIO_IRQ_LEVEL_LOW    0x08u

/*
 * The lines' state, every byte of it valid whatever its contents (so it can live in memory that
 * outlives the process, lib/persist.h, and a next instance takes it as it is): each field is
 * one byte per line, and the code reads every one of them through gpio_sim_fix().
 */
struct gpio_sim_state {
	uint8_t dir[GPIO_SIM_LINES];      /* GPIO_DIR_*, set by the guest */
	uint8_t out[GPIO_SIM_LINES];      /* output latch, 0/1, set by the guest */
	uint8_t host[GPIO_SIM_LINES];     /* level the host drives, 0/1 */
	uint8_t irq[GPIO_SIM_LINES];      /* GPIO_IRQ_*, set by the guest */
	uint8_t latched[GPIO_SIM_LINES];  /* an edge seen while the interrupt was masked */
	uint8_t level[GPIO_SIM_LINES];    /* what the line read at the last scan */
};

struct gpio_sim {
	struct gpio_backend be;           /* ops: gpio_sim_ops; name, st: these */
	unsigned n;
	char name[GPIO_SIM_LINES][CONFIG_GPIO_NAME_MAX];
	uint8_t bias[GPIO_SIM_LINES];
	int16_t src[GPIO_SIM_LINES];      /* the line driving this one (loopback), -1: none */
	struct gpio_sim_state *st;
};

/*
 * Lines from the configuration, with their state in *st. fresh: st is new (zeroed) and gets
 * the power-on state; otherwise it is a previous instance's and is kept (values out of range
 * are brought back to power-on values). Returns 0 or -EINVAL (no lines).
 */
int gpio_sim_init(struct gpio_sim *s, const struct config_gpio *c, struct gpio_sim_state *st,
		  bool fresh);

/* The simulated lines as a backend of devices/gpio.c (s initialised by gpio_sim_init). */
struct gpio_backend *gpio_sim_backend(struct gpio_sim *s);

/* A state field out of range back to its power-on value (any backend's state). */
void gpio_sim_fix_state(struct gpio_sim_state *st, unsigned line);
/* The guest's state of one line discarded (any backend's state). */
void gpio_sim_release_state(struct gpio_sim_state *st, unsigned line);

/* The guest's side back to power-on (device reset): what the host drives stays. */
void gpio_sim_reset(struct gpio_sim *s);
/* SET_DIRECTION NONE: the guest's state of one line is discarded (virtio 1.2 §5.17.6.1). */
void gpio_sim_release(struct gpio_sim *s, unsigned line);

/* What line reads now (0/1). line < s->n. */
unsigned gpio_sim_level(const struct gpio_sim *s, unsigned line);

/* True for the irq type values the spec defines. */
bool gpio_sim_irq_type_ok(uint32_t type);
/* Line `line` has an enabled level interrupt whose level it read at the last scan. */
bool gpio_sim_level_active(const struct gpio_sim_state *st, unsigned line);

/*
 * After any change: compare every line with its last level; an edge matching an enabled edge
 * interrupt is latched (st->latched). Returns how many lines changed.
 */
unsigned gpio_sim_scan(struct gpio_sim *s);

#endif
