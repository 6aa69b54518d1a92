/*
 * libxenevtchn, simulated, in the shape of Linux's /dev/xen/evtchn: one fd per handle, the
 * handle's "file". The hub gives each handle a socket pair as its doorbell (the read end is
 * xenevtchn_fd; the write end rings it) and a shared page of per-binding state and a set of
 * queued bindings (struct xsim_evtchn_page; the rules are in evtchn_shm.h). The guest side
 * fires a bound port by marking it in the page and ringing the doorbell once; a delivered port
 * stays masked until xenevtchn_unmask, which delivers it again if it fired meanwhile. The
 * doorbell is readable while something is queued. xenevtchn_notify bumps the binding's notify
 * counter in the page and wakes the guest side, which waits on it (a futex).
 *
 * As in Linux the bindings belong to the file, not to the process: another process given the
 * fd (a restarted daemon, from systemd's fd store) takes the handle over with
 * xenevtchn_fdopen(), with its bindings, their local port numbers and what is queued; the hub
 * unbinds them when the last copy of the fd is closed.
 *
 * One thread reads a handle (xenevtchn_pending), as the daemon's loop does; any thread may
 * unmask or notify.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <xenevtchn.h>

#include "tests/xensim/client.h"
#include "tests/xensim/fault.h"
#include "tests/xensim/evtchn_shm.h"

struct evtchn_port {
	uint32_t port;          /* our local port; 0 = free binding */
};

struct xenevtchn_handle {
	int conn;
	int doorbell;                   /* the handle's fd: the doorbell's read end */
	int ring;                       /* the doorbell's write end */
	int kbell;                      /* the dom0 kernel model's doorbell (evtchn_shm.h) */
	struct xsim_evtchn_page *pg;    /* shared with the hub's guest side */
	int64_t restrict_domid;
	uint32_t port_base;             /* binding i is local port port_base + i */
	struct evtchn_port *b;          /* XSIM_EVTCHN_MAX bindings */
	unsigned nb;                    /* bindings 0..nb-1 have been used */
	unsigned cursor;                /* the next scan of ready[] starts here (round robin) */
};

/*
 * Local ports are unique in dom0, as in Xen: the hub gives each handle a block of
 * XSIM_EVTCHN_MAX numbers (port_base), so a port's binding is found by subtraction, in whatever
 * process has the handle.
 */

static void evtchn_free_handle(xenevtchn_handle *h)
{
	if (h->pg && h->pg != MAP_FAILED)
		munmap(h->pg, sizeof(*h->pg));
	if (h->doorbell >= 0)
		close(h->doorbell);
	if (h->ring >= 0)
		close(h->ring);
	if (h->kbell >= 0)
		close(h->kbell);
	if (h->conn >= 0)
		close(h->conn);
	free(h->b);
	free(h);
}

static xenevtchn_handle *evtchn_new(void)
{
	xenevtchn_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->restrict_domid = -1;
	h->doorbell = h->ring = h->kbell = h->conn = -1;
	h->b = calloc(XSIM_EVTCHN_MAX, sizeof(*h->b));
	if (!h->b) {
		free(h);
		return NULL;
	}
	return h;
}

/* The page from its memfd (closed either way); false on failure. */
static bool evtchn_map_page(xenevtchn_handle *h, int page_fd)
{
	h->pg = mmap(NULL, sizeof(*h->pg), PROT_READ | PROT_WRITE, MAP_SHARED, page_fd, 0);
	close(page_fd);
	return h->pg != MAP_FAILED;
}

/* A handle and the hub's answer to op (fd: a handle's file to reopen, or -1); NULL (errno). */
static xenevtchn_handle *evtchn_ask(unsigned op, int fd, struct xsim_msg **m, int *fds,
				    unsigned nfds)
{
	xenevtchn_handle *h = evtchn_new();
	int e;

	*m = xsim_msg_new(op, 0);
	if (!h || !*m) {
		e = ENOMEM;
		goto fail;
	}
	h->conn = xsim_fault("evtchn") ? (errno = ENOENT, -1) : xsim_connect();
	if (h->conn >= 0 && xsim_rpc(h->conn, *m, fd, fds, nfds) >= 0)
		return h;
	e = errno;
fail:
	if (h)
		evtchn_free_handle(h);
	free(*m);
	*m = NULL;
	errno = e;
	return NULL;
}

/* The handle's page from its memfd; NULL (errno) when it cannot be mapped. */
static xenevtchn_handle *evtchn_done(xenevtchn_handle *h, struct xsim_msg *m, int page_fd)
{
	int e = errno;

	if (evtchn_map_page(h, page_fd)) {
		free(m);
		return h;
	}
	e = errno ? errno : e;
	free(m);
	evtchn_free_handle(h);
	errno = e;
	return NULL;
}

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned int flags)
{
	int fds[4] = { -1, -1, -1, -1 };
	struct xsim_msg *m;
	xenevtchn_handle *h = evtchn_ask(XSIM_OP_EVTCHN_OPEN, -1, &m, fds, 4);

	(void)logger;
	(void)flags;
	if (!h)
		return NULL;
	h->doorbell = fds[0];
	h->kbell = fds[2];
	h->ring = fds[3];
	h->port_base = m->a;
	return evtchn_done(h, m, fds[1]);
}

static bool evtchn_queued(xenevtchn_handle *h);
static void evtchn_drained(xenevtchn_handle *h);

xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger, int fd, unsigned open_flags)
{
	int fds[3] = { -1, -1, -1 };
	xenevtchn_handle *h;
	struct xsim_msg *m;

	(void)logger;
	if (open_flags & XENEVTCHN_NO_CLOEXEC) {
		errno = EINVAL;
		return NULL;
	}
	h = evtchn_ask(XSIM_OP_EVTCHN_FDOPEN, fd, &m, fds, 3);
	if (!h)
		return NULL;
	h->kbell = fds[1];
	h->ring = fds[2];
	h->port_base = m->a;
	/* The bindings the file has, under the same local ports as in the process that made them. */
	for (unsigned i = 0; i < XSIM_EVTCHN_MAX && i / 8 < m->len; i++) {
		if (((const uint8_t *)m->data)[i / 8] & (1u << (i % 8))) {
			h->b[i].port = h->port_base + i;
			h->nb = i + 1;
		}
	}
	h = evtchn_done(h, m, fds[0]);
	if (!h)
		return NULL;
	h->doorbell = fd;   /* the handle owns it now, as the real library does */
	/*
	 * The file's last reader may have been killed between draining the doorbell and clearing
	 * `kicked` (in xenevtchn_pending): then every later queuer would see `kicked` set and
	 * never ring, and what is queued would never make the fd readable. Linux's queue lives in
	 * the kernel and has no such state, so a new reader starts afresh: `kicked` cleared, the
	 * doorbell rung when anything is queued (an extra message only makes one read find
	 * nothing, which a reader expects).
	 */
	evtchn_drained(h);
	if (evtchn_queued(h))
		xsim_evtchn_kick(h->pg, h->ring);
	return h;
}

int xenevtchn_close(xenevtchn_handle *xce)
{
	if (!xce)
		return 0;
	/* Closing the connection unbinds everything in the hub. */
	evtchn_free_handle(xce);
	return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
	return xce->doorbell;
}

/* The binding of a local port of ours; -1 with EINVAL for any other port. */
static int evtchn_find(xenevtchn_handle *h, evtchn_port_t port)
{
	uint32_t i = port - h->port_base;

	if (i < XSIM_EVTCHN_MAX && h->b[i].port != 0 && h->b[i].port == port)
		return (int)i;
	errno = EINVAL;
	return -1;
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
						     evtchn_port_t remote_port)
{
	struct xsim_msg *m;
	unsigned i = 0;

	if (xce->restrict_domid >= 0 && xce->restrict_domid != domid) {
		errno = EPERM;
		return -1;
	}
	while (i < XSIM_EVTCHN_MAX && xce->b[i].port)
		i++;
	if (i == XSIM_EVTCHN_MAX) {
		errno = ENOSPC;
		return -1;
	}
	/* A new binding starts unmasked with nothing queued (no signal reaches it yet). */
	atomic_store_explicit(&xce->pg->state[i], 0, memory_order_relaxed);
	atomic_fetch_and_explicit(&xce->pg->ready[i / 64], ~(UINT64_C(1) << (i % 64)),
				  memory_order_relaxed);
	m = xsim_msg_new(XSIM_OP_BIND, domid);
	if (!m)
		return -1;
	m->a = remote_port;
	m->b = i;
	if (xsim_rpc(xce->conn, m, -1, NULL, 0) < 0) {
		free(m);
		return -1;
	}
	free(m);
	xce->b[i].port = xce->port_base + i;
	if (i >= xce->nb)
		xce->nb = i + 1;
	return (xenevtchn_port_or_error_t)xce->b[i].port;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
	int i = evtchn_find(xce, port);
	struct xsim_msg *m;

	if (i < 0)
		return -1;
	m = xsim_msg_new(XSIM_OP_UNBIND, 0);
	if (!m)
		return -1;
	m->b = (uint32_t)i;
	/* The hub only forgets the binding: this cannot fail while the hub is there. */
	if (xsim_rpc(xce->conn, m, -1, NULL, 0) < 0) {
		free(m);
		return -1;
	}
	free(m);
	xce->b[i].port = 0;
	return 0;
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
	int i = evtchn_find(xce, port);

	if (i < 0)
		return -1;
	/* release: what we wrote before notifying (the response) is seen with the new count. */
	atomic_fetch_add_explicit(&xce->pg->notify[i], 1, memory_order_release);
	/* Shared futex (the page is MAP_SHARED): the guest side is another process. */
	return syscall(SYS_futex, (uint32_t *)&xce->pg->notify[i], FUTEX_WAKE, INT_MAX, NULL,
		       NULL, 0) < 0 ? -1 : 0;
}

/* Take one queued binding, scanning round robin from the cursor; -1 when none is queued. */
static int evtchn_take(xenevtchn_handle *h)
{
	unsigned nw = (h->nb + 63) / 64, start = h->cursor;

	for (unsigned k = 0; nw && k <= nw; k++) {
		unsigned w = (start / 64 + k) % nw;
		/* seq_cst: after the drain's store to `kicked`, this is the reader's second look. */
		uint64_t v = atomic_load_explicit(&h->pg->ready[w], memory_order_seq_cst);

		/* The start word twice: first its bits from the cursor on, at the end the rest. */
		if (k == 0)
			v &= ~UINT64_C(0) << (start % 64);
		else if (k == nw)
			v &= ~(~UINT64_C(0) << (start % 64));
		while (v) {
			unsigned b = (unsigned)__builtin_ctzll(v);
			uint64_t bit = UINT64_C(1) << b;

			/* acquire: pairs with the queuer's release, making what it wrote visible. */
			if (atomic_fetch_and_explicit(&h->pg->ready[w], ~bit, memory_order_acquire) &
			    bit) {
				h->cursor = (w * 64 + b + 1) % (nw * 64);
				return (int)(w * 64 + b);
			}
			v &= ~bit;
		}
	}
	return -1;
}

static bool evtchn_queued(xenevtchn_handle *h)
{
	/* seq_cst: the reader's second look, after clearing `kicked`. */
	for (unsigned w = 0; w < (h->nb + 63) / 64; w++)
		if (atomic_load_explicit(&h->pg->ready[w], memory_order_seq_cst))
			return true;
	return false;
}

/*
 * The doorbell was drained (a read returned its count): clear `kicked` so that the next queuer
 * writes it. seq_cst: the reader's half of the Dekker pair; the caller then looks at ready[]
 * again (evtchn_take or evtchn_queued), which finds whatever a queuer that saw `kicked` still
 * set did not ring for.
 *
 * A read that finds the doorbell empty leaves `kicked` alone: if it is set, a queuer is between
 * setting it and writing, and its write will make the fd readable.
 */
static void evtchn_drained(xenevtchn_handle *h)
{
	atomic_store_explicit(&h->pg->kicked, 0, memory_order_seq_cst);
}

/*
 * The last queued binding was taken: drain the doorbell so the fd is not readable with nothing
 * queued (Linux's evtchn fd polls readable only while its ring is non-empty), and ring it again
 * if something was queued meanwhile without a ring. Only when it was kicked since the last
 * drain: then a write was made or is under way, so even a blocking read returns at once.
 */
static void evtchn_settle(xenevtchn_handle *h)
{
	char buf[16];
	ssize_t n;

	if (!atomic_load_explicit(&h->pg->kicked, memory_order_seq_cst))
		return;
	do
		n = read(h->doorbell, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return;
	evtchn_drained(h);
	if (evtchn_queued(h))
		xsim_evtchn_kick(h->pg, h->ring);
}

/*
 * Next pending port, which stays masked until xenevtchn_unmask. Like a read of
 * /dev/xen/evtchn: blocks unless the fd was made non-blocking, then fails with EAGAIN when
 * nothing is pending.
 */
xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
	for (;;) {
		int i = evtchn_take(xce);
		char buf[16];
		ssize_t n;

		if (i >= 0) {
			if (!evtchn_queued(xce))
				evtchn_settle(xce);
			if (xce->b[i].port)
				return (xenevtchn_port_or_error_t)xce->b[i].port;
			continue;   /* fired just before it was unbound */
		}
		/* Nothing queued: wait here when the fd blocks, else learn it does not. */
		n = read(xce->doorbell, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = EPIPE;   /* the hub is gone */
		if (n <= 0)
			return -1;   /* EAGAIN: nothing pending (see evtchn_drained) */
		evtchn_drained(xce);
	}
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
	int i = evtchn_find(xce, port);

	if (i < 0)
		return -1;
	xsim_evtchn_unmask(xce->pg, xce->ring, xce->kbell, (unsigned)i);
	return 0;
}

int xenevtchn_restrict(xenevtchn_handle *xce, domid_t domid)
{
	if (xce->restrict_domid >= 0 && xce->restrict_domid != domid) {
		errno = EPERM;
		return -1;
	}
	xce->restrict_domid = domid;
	xsim_note_restricted(xce->conn, domid, XSIM_RESTRICTED_EVTCHN);
	return 0;
}
