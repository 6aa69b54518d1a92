/*
 * A host gpiochip's lines passed through to the guest (libgpiod v1, the GPIO character device):
 * the guest sees the lines `pass = OFFSET[=GUESTNAME]` allows, numbered in the order given.
 *
 * The chip is opened (and every allowed offset checked) at setup, before the sandbox; a line is
 * requested (consumer "xen-virtiod") only while the guest gives it a direction, and released on
 * direction none and at reset. An input with an interrupt type is requested for both edges: its
 * event fd is watched on the loop, each edge updates the level and is latched when it matches
 * the type; a level interrupt reads the value after each batch of edges. A line another
 * consumer holds is refused (-EBUSY) and the line stays released.
 */
#ifndef XVD_GPIO_CHIP_H
#define XVD_GPIO_CHIP_H

#include <stdbool.h>

#include "config/config.h"
#include "devices/gpio_backend.h"

struct ev_loop;

#define GPIO_CHIP_CONSUMER "xen-virtiod"
/* Edge events read from one line per wakeup (the rest wait for the next loop iteration). */
#define GPIO_CHIP_EVENT_BUDGET 16

/*
 * Opens c->chip and checks every passed offset. st: the guest's state (fresh: zeroed here;
 * otherwise a previous instance's, whose directions are requested again, and lines that cannot
 * be are released). Returns the backend, or NULL with errno set (the reason logged, naming
 * what).
 */
struct gpio_backend *gpio_chip_open(const struct config_gpio *c, struct gpio_sim_state *st,
				    bool fresh, struct ev_loop *loop, const char *what);

#endif
