/*
 * A byte FIFO of fixed capacity that keeps the newest bytes: a console's guest output waiting
 * for a slow or absent reader. Appending to a full ring drops the oldest bytes and counts them.
 */
#ifndef XVD_CONSOLE_RING_H
#define XVD_CONSOLE_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct con_ring {
	uint8_t *buf;
	size_t cap;          /* 0: no buffering, everything appended is dropped */
	size_t head;         /* offset of the oldest byte */
	size_t len;          /* bytes queued */
	uint64_t dropped;    /* bytes lost to overflow, ever */
};

/* Returns 0 or -ENOMEM. cap may be 0. */
int con_ring_init(struct con_ring *r, size_t cap);
void con_ring_fini(struct con_ring *r);
/* Append n bytes; the oldest bytes make room. Returns how many bytes were dropped. */
size_t con_ring_put(struct con_ring *r, const void *p, size_t n);
/* Describe the queued bytes, oldest first, in up to two pieces; returns the piece count. */
unsigned con_ring_peek(const struct con_ring *r, struct iovec iov[2]);
/* Forget the n oldest bytes (n <= len). */
void con_ring_consume(struct con_ring *r, size_t n);

#endif
