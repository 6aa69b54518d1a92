/*
 * A host-side control socket for a device: a Unix stream socket that takes one command per
 * line and answers each with lines of text (devices/gpio.c: set, get, list). Bounded: at most
 * GPIO_CTL_CLIENTS clients at once (further connects wait in the backlog), lines of at most
 * GPIO_CTL_LINE_MAX bytes (a longer one gets an error and the client is closed), and a client
 * is read only when its previous answer has been written out, so one answer is all it holds.
 */
#ifndef XVD_GPIO_CTL_H
#define XVD_GPIO_CTL_H

#include <stddef.h>

#include "lib/log.h"

#define GPIO_CTL_CLIENTS  4
#define GPIO_CTL_LINE_MAX 128
#define GPIO_CTL_OUT_MAX  8192     /* the longest answer: `list` of every line */

struct ev_loop;
struct gpio_ctl;

/* An answer being built; gpio_ctl_reply() appends, cutting what does not fit. */
struct gpio_ctl_out {
	char buf[GPIO_CTL_OUT_MAX];
	size_t len;
};
__attribute__((format(printf, 2, 3)))
void gpio_ctl_reply(struct gpio_ctl_out *o, const char *fmt, ...);

/* One command line (NUL-terminated, without its newline) and where its answer goes. */
typedef void (*gpio_ctl_fn)(void *opaque, char *line, struct gpio_ctl_out *o);

/*
 * Listen on path (a stale socket there is replaced; anything else is an error). name is for log
 * lines, rl the rate limit of the client errors a host program can cause. Returns NULL with
 * errno set.
 */
struct gpio_ctl *gpio_ctl_open(struct ev_loop *loop, const char *path, const char *name,
			       struct ratelimit *rl, gpio_ctl_fn fn, void *opaque);
/* Close every client and the listener; unlink the socket unless keep_path. */
void gpio_ctl_close(struct gpio_ctl *c, bool keep_path);

#endif
