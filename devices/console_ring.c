#include "devices/console_ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int con_ring_init(struct con_ring *r, size_t cap)
{
	memset(r, 0, sizeof(*r));
	if (cap == 0)
		return 0;
	r->buf = malloc(cap);
	if (!r->buf)
		return -ENOMEM;
	r->cap = cap;
	return 0;
}

void con_ring_fini(struct con_ring *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

void con_ring_consume(struct con_ring *r, size_t n)
{
	if (n > r->len)
		n = r->len;
	r->len -= n;
	r->head = r->len ? (r->head + n) % r->cap : 0;
}

/* Copy n bytes (n <= cap - len) behind the newest byte, wrapping at the end of buf. */
static void con_ring_copy_in(struct con_ring *r, const uint8_t *p, size_t n)
{
	size_t tail = (r->head + r->len) % r->cap;
	size_t first = r->cap - tail < n ? r->cap - tail : n;

	memcpy(r->buf + tail, p, first);
	memcpy(r->buf, p + first, n - first);
	r->len += n;
}

size_t con_ring_put(struct con_ring *r, const void *p, size_t n)
{
	const uint8_t *src = p;
	size_t drop = 0;

	if (n >= r->cap) {
		/* Only the last cap bytes can survive: everything queued and the head of p go. */
		drop = r->len + (n - r->cap);
		src += n - r->cap;
		n = r->cap;
		r->len = 0;
		r->head = 0;
	} else if (n > r->cap - r->len) {
		drop = n - (r->cap - r->len);
		con_ring_consume(r, drop);
	}
	if (n)
		con_ring_copy_in(r, src, n);
	r->dropped += drop;
	return drop;
}

unsigned con_ring_peek(const struct con_ring *r, struct iovec iov[2])
{
	size_t first;

	if (r->len == 0)
		return 0;
	first = r->cap - r->head < r->len ? r->cap - r->head : r->len;
	iov[0] = (struct iovec){ r->buf + r->head, first };
	if (first == r->len)
		return 1;
	iov[1] = (struct iovec){ r->buf, r->len - first };
	return 2;
}
