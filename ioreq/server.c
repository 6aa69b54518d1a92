/*
 * One guest's Xen side: the objects of DESIGN.md §3, the dispatch of the guest's register
 * accesses to the windows' handlers (ioreq/window.h), and SPI injection.
 *
 * Two ioreq servers, when the notify fast path runs:
 *   main    every register of every window, except QueueNotify; its ports are ours alone;
 *   notify  the QueueNotify dword of each window; its ports are shared with the dom0 kernel's
 *           ioeventfd handler, which completes the kicks it matches (ioreq/slot.h says how we
 *           share a slot with it, and why nothing else goes on that server).
 * Without the fast path there is only the main server, routing whole windows.
 *
 * Setup order (each stage undone in exact reverse by xen_guest_close()):
 *   open:  devicemodel, foreignmemory, evtchn, gnttab handles -> guest memory -> create the
 *          main server -> map its ioreq frames -> enable it -> bind one port per vCPU
 *   add:   route each window to the main server
 *   start: restrict the handles -> (fast path: create, map, enable and bind the notify server,
 *          assign the eventfds, route each QueueNotify dword to it, then take that dword from
 *          the main server) -> serve the event channel fd -> watch for the domain's death
 * A server is enabled before binding because Xen publishes each vCPU's vp_eport in the ioreq
 * page when the server is enabled; with no range routed yet, no ioreq can reach it early. The
 * notify server gets its dwords only once every ioeventfd is assigned, so the kernel claims a
 * kick there from the first one on, exactly as slot_kernel_claims() expects.
 */
#include "ioreq/xen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ev.h>
#include <xendevicemodel.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xengnttab.h>
#include <xen/hvm/ioreq.h>
#include <xen/memory.h>

#include "ioreq/fastpath.h"
#include "ioreq/gmem_xen.h"
#include "ioreq/privcmd.h"
#include "ioreq/slot.h"
#include "ioreq/xen_priv.h"
#include "ioreq/xen_stats.h"
#include "lib/log.h"
#include "lib/persist.h"
#include "lib/platform.h"
#include "lib/util.h"

#define XG_PAGE_SIZE      4096u
#define XG_SLOTS_PER_PAGE (XG_PAGE_SIZE / sizeof(ioreq_t))
#define XG_MAX_VCPUS      4096u      /* sanity bound on what nr_vcpus may claim */
#define XG_MAX_WINDOWS    64u
#define XG_MMIO_SPACE     1u         /* XEN_DMOP_IO_RANGE_MEMORY */
#define XG_BUSY_RETRY_S   0.0005     /* a slot the kernel holds is looked at again this late */

_Static_assert(sizeof(evtchn_port_t) == sizeof(uint32_t), "ports handed to privcmd as u32");

enum { XG_MAIN, XG_NOTIFY, XG_NSERVERS };

/* A slot the kernel's handler held when we looked: look again from a timer (busy_w). */
enum { XG_WAIT_NONE, XG_WAIT_TAKE, XG_WAIT_ANSWER, XG_WAIT_WINDOW };

/*
 * What the next instance needs to take this guest's Xen side over (xen_opts.persist, region
 * "xen"), written as things happen: an id before its `created` flag, a port once bound, a window
 * once routed, `fastpath` once the kernel holds eventfds and cleared once it no longer does,
 * `ready` last, when serving starts. A record that is not `ready` is not taken over.
 */
struct xg_state {
	uint32_t nr_vcpus;
	uint32_t nwin;                    /* windows routed, in order */
	uint8_t created[XG_NSERVERS];
	uint8_t split;                    /* the kick dwords are routed to the notify server */
	uint8_t fastpath;                 /* the kernel holds ioeventfds and irqfds of ours */
	uint8_t ready;
	uint8_t pad[3];
	uint16_t id[XG_NSERVERS];
	uint32_t pad2;
	uint64_t notify_va;               /* the notify page's address the ioeventfds know */
	struct { uint64_t base; uint32_t irq, nq; } win[XG_MAX_WINDOWS];
	uint32_t port[];                  /* [server * nr_vcpus + vcpu] */
};

#define XG_ORDER() __asm__ __volatile__("" ::: "memory")

/* One ioreq server and the ports of its vCPU slots. */
struct xg_server {
	ioservid_t id;
	bool created;
	bool adopted;                 /* the previous instance's (xg_adopt_server()) */
	bool portless;                /* adopted, its ports held by stale kernel handlers */
	xenforeignmemory_resource_handle *res;
	ioreq_t *slots;               /* nr_vcpus entries in the mapped ioreq frames */
	evtchn_port_t *port;          /* local port of each vCPU (nr_bound valid) */
	unsigned nr_bound;
	uint8_t *wait;                /* per vCPU: XG_WAIT_*; its port stays masked meanwhile */
	ioreq_t *held;                /* per vCPU: the request whose answer waits (XG_WAIT_ANSWER,
				       * XG_WAIT_WINDOW) */
	unsigned *waitwin;            /* per vCPU: the window an XG_WAIT_WINDOW write waits for */
	const struct slot_kernel *kernel;  /* the kernel's ioeventfds here, or NULL */
};

/* A local port, for dispatch: which server's which vCPU. */
struct xg_port {
	evtchn_port_t port;
	uint16_t server;
	uint32_t vcpu;
};

struct xen_window {
	struct xen_guest *g;
	unsigned index;               /* in g->win[], and in the fast path's windows */
	char name[80];
	uint64_t base;
	uint32_t irq;
	unsigned nqueues;
	const struct xen_window_ops *ops;
	void *opaque;
	bool routed;                  /* the main server has the window (less its kick dword) */
	bool split;                   /* the notify server has the kick dword */
};

struct xen_guest {
	struct ev_loop *loop;
	struct xen_opts opts;
	char name[64];

	xendevicemodel_handle *dm;
	xenforeignmemory_handle *fm;
	xenevtchn_handle *xce;
	xengnttab_handle *gt;
	struct xen_privcmd *pc;       /* for the fast path; NULL when off or unavailable */
	struct gmem *gm;

	unsigned nr_vcpus;
	unsigned nr_frames;           /* ioreq frames per server */
	struct xg_server srv[XG_NSERVERS];
	struct xg_port *ports;        /* every bound port, sorted, for dispatch */
	unsigned nports;

	struct xen_window win[XG_MAX_WINDOWS];
	unsigned nwin;

	struct fastpath *fp;          /* NULL: every access comes through the main server */
	char fp_why[160];             /* why not, for the log line and STATUS */

	ev_io evtchn_w;
	ev_timer busy_w;              /* looks again at slots the kernel held (srv[].wait) */
	unsigned nbusy;
	bool serving;
	bool dead;                    /* the domain is gone: Xen tore its side down with it */
	struct xen_death_watch *death;
	void (*on_death)(void *opaque);
	void *death_opaque;

	struct ratelimit rl;
	struct slot_stats slot;
	struct xen_guest_stats st;

	struct xg_state *rec;         /* in opts.persist, or private when there is none */
	bool rec_private;
	bool adopting;                /* taking a previous instance's servers over */
	bool evtchn_inherited;        /* the handle (and its bindings) came from the fd store */
	/*
	 * The notify page's address in the previous instance, which its ioeventfds name: ours must
	 * differ (xg_map_frames()), or Linux would file our ioeventfds under its registration,
	 * which the kernel may keep (dead) when they could not be deassigned.
	 */
	uint64_t stale_va;
	/*
	 * A previous instance's record that is not taken over (its start never finished, or its
	 * devices were configured otherwise): the servers it made are removed (xg_clean_previous).
	 */
	struct xg_state *prev;
};

/* Domain teardown makes every call fail with ESRCH: worth a debug line, not a warning. */
static void xg_log_call(const char *what, int err)
{
	xvd_log(err == ESRCH ? LOG_DEBUG : LOG_WARNING, "xen: %s: %s", what, strerror(err));
}

/* ---- dispatch ---- */

static struct xen_window *xg_window_find(struct xen_guest *g, uint64_t addr, uint32_t size)
{
	for (unsigned i = 0; i < g->nwin; i++) {
		uint64_t off = addr - g->win[i].base;

		if (addr >= g->win[i].base && off < PLATFORM_MMIO_WINDOW &&
		    size <= PLATFORM_MMIO_WINDOW - off)
			return &g->win[i];
	}
	return NULL;
}

static uint64_t xg_size_mask(uint32_t size)
{
	return size >= 8 || size == 0 ? UINT64_MAX : (UINT64_C(1) << (size * 8)) - 1;
}

static bool xg_size_ok(uint32_t size)
{
	return size == 1 || size == 2 || size == 4 || size == 8;
}

/* Anything but a plain one-shot register access: reads see all-ones, writes vanish. */
static uint64_t xg_serve_bad(struct xen_guest *g, const ioreq_t *r)
{
	g->st.bad_ioreqs++;
	log_rl(&g->rl, LOG_WARNING,
	       "xen: %s: bad ioreq type %u dir %s addr 0x%llx size %u count %u ptr %u",
	       g->name, r->type, r->dir == IOREQ_READ ? "read" : "write",
	       (unsigned long long)r->addr, r->size, r->count, r->data_is_ptr);
	return r->dir == IOREQ_READ ? xg_size_mask(xg_size_ok(r->size) ? r->size : 8) : 0;
}

/*
 * Handle a private copy of a request; returns the data to answer a read with. *later: the
 * window holds a write (XEN_WINDOW_LATER) in *wait_for.
 */
static uint64_t xg_serve_req(struct xen_guest *g, const ioreq_t *r, struct xen_window **later)
{
	struct xen_window *w;
	uint64_t mask;
	uint32_t off;

	if (r->type == IOREQ_TYPE_INVALIDATE) {
		g->st.invalidates++;
		gmem_invalidate(g->gm);
		return 0;
	}
	if (r->type != IOREQ_TYPE_COPY || r->count != 1 || r->data_is_ptr || !xg_size_ok(r->size))
		return xg_serve_bad(g, r);
	w = xg_window_find(g, r->addr, r->size);
	if (!w)
		return xg_serve_bad(g, r);
	g->st.ioreqs++;
	mask = xg_size_mask(r->size);
	off = (uint32_t)(r->addr - w->base);
	if (r->dir == IOREQ_READ)
		return w->ops->read(w->opaque, off, r->size) & mask;
	if (w->ops->write(w->opaque, off, r->size, r->data & mask) == XEN_WINDOW_LATER)
		*later = w;
	return 0;
}

static void xg_notify_vcpu(struct xen_guest *g, evtchn_port_t port, unsigned vcpu)
{
	if (xenevtchn_notify(g->xce, port) < 0)
		log_rl(&g->rl, LOG_WARNING, "xen: %s: notify vCPU %u: %s", g->name, vcpu,
		       strerror(errno));
}

static void xg_unmask(struct xen_guest *g, evtchn_port_t port)
{
	if (xenevtchn_unmask(g->xce, port) < 0)
		log_rl(&g->rl, LOG_WARNING, "xen: %s: unmask port %u: %s", g->name, port,
		       strerror(errno));
}

/* Notify the vCPU when its answer was written; false when the kernel holds the slot. */
static bool xg_answered(struct xen_guest *g, struct xg_server *s, unsigned vcpu,
			enum slot_answer a)
{
	if (a == SLOT_ANSWERED)
		xg_notify_vcpu(g, s->port[vcpu], vcpu);
	return a != SLOT_HELD;
}

/*
 * One look at a vCPU's slot after its port's event (the port is masked). Returns the wait
 * (XG_WAIT_*) the kernel's handler left us with: the port stays masked until it is settled.
 */
static unsigned xg_serve_slot(struct xen_guest *g, struct xg_server *s, unsigned vcpu)
{
	volatile ioreq_t *slot = &s->slots[vcpu];
	ioreq_t *req = &s->held[vcpu];
	struct xen_window *later = NULL;
	uint64_t data;

	switch (slot_take(slot, s->kernel, req, &g->slot)) {
	case SLOT_NOTHING:
		g->st.spurious++;
		return XG_WAIT_NONE;
	case SLOT_KERNEL:
		return XG_WAIT_NONE;
	case SLOT_BUSY:
		return XG_WAIT_TAKE;
	case SLOT_OURS:
		break;
	}
	data = xg_serve_req(g, req, &later);
	if (later) {
		/* Answered by xen_window_done(); its port stays masked until then. */
		s->waitwin[vcpu] = later->index;
		return XG_WAIT_WINDOW;
	}
	return xg_answered(g, s, vcpu, slot_answer(slot, s->kernel, req, data, &g->slot))
		       ? XG_WAIT_NONE : XG_WAIT_ANSWER;
}

static void xg_set_wait(struct xen_guest *g, struct xg_server *s, unsigned vcpu, unsigned w)
{
	s->wait[vcpu] = (uint8_t)w;
	/* A write the window holds needs no timer: xen_window_done() answers it. */
	if (w == XG_WAIT_WINDOW)
		return;
	g->nbusy++;
	if (!ev_is_active(&g->busy_w))
		ev_timer_again(g->loop, &g->busy_w);
}

void xen_window_done(struct xen_window *w)
{
	struct xen_guest *g = w->g;

	for (unsigned i = 0; i < XG_NSERVERS; i++) {
		struct xg_server *s = &g->srv[i];

		for (unsigned v = 0; s->wait && v < s->nr_bound; v++) {
			if (s->wait[v] != XG_WAIT_WINDOW || s->waitwin[v] != w->index)
				continue;
			s->wait[v] = XG_WAIT_NONE;
			if (xg_answered(g, s, v, slot_answer(&s->slots[v], s->kernel, &s->held[v], 0,
							     &g->slot)))
				xg_unmask(g, s->port[v]);
			else
				xg_set_wait(g, s, v, XG_WAIT_ANSWER);
		}
	}
}

/* A slot the kernel held last time: take it again, or write the answer we kept. */
static unsigned xg_retry_slot(struct xen_guest *g, struct xg_server *s, unsigned vcpu)
{
	if (s->wait[vcpu] == XG_WAIT_TAKE)
		return xg_serve_slot(g, s, vcpu);
	return xg_answered(g, s, vcpu, slot_answer_again(&s->slots[vcpu], s->kernel,
							 &s->held[vcpu], &g->slot))
		       ? XG_WAIT_NONE : XG_WAIT_ANSWER;
}

/* The kernel's handler held these slots last time: look again, unmask what is settled. */
static void xg_busy_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct xen_guest *g = container_of(t, struct xen_guest, busy_w);

	(void)revents;
	for (unsigned i = 0; i < XG_NSERVERS && g->nbusy; i++) {
		struct xg_server *s = &g->srv[i];

		for (unsigned v = 0; s->wait && v < s->nr_bound; v++) {
			unsigned w;

			if (s->wait[v] == XG_WAIT_NONE || s->wait[v] == XG_WAIT_WINDOW)
				continue;
			w = xg_retry_slot(g, s, v);
			if (w == XG_WAIT_WINDOW) {
				g->nbusy--;
				s->wait[v] = (uint8_t)w;
				continue;
			}
			if (w) {
				s->wait[v] = (uint8_t)w;
				continue;
			}
			s->wait[v] = XG_WAIT_NONE;
			g->nbusy--;
			xg_unmask(g, s->port[v]);
		}
	}
	if (!g->nbusy)
		ev_timer_stop(loop, t);
}

static int xg_port_cmp(const void *a, const void *b)
{
	const struct xg_port *x = a, *y = b;

	return x->port < y->port ? -1 : x->port > y->port;
}

static const struct xg_port *xg_port_find(const struct xen_guest *g, evtchn_port_t port)
{
	struct xg_port key = { .port = port };

	return g->nports ? bsearch(&key, g->ports, g->nports, sizeof(key), xg_port_cmp) : NULL;
}

static void xg_evtchn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct xen_guest *g = container_of(w, struct xen_guest, evtchn_w);
	xenevtchn_port_or_error_t port;

	(void)loop;
	(void)revents;
	/* The fd is non-blocking: drain every pending port, then let the loop wait again. */
	while ((port = xenevtchn_pending(g->xce)) >= 0) {
		const struct xg_port *p = xg_port_find(g, (evtchn_port_t)port);

		if (!p) {
			log_rl(&g->rl, LOG_WARNING, "xen: %s: event on unknown port %d", g->name,
			       port);
			xg_unmask(g, (evtchn_port_t)port);
		} else if (g->srv[p->server].wait[p->vcpu]) {
			/* Masked until the retry settles it; cannot normally fire meanwhile. */
		} else {
			unsigned w = xg_serve_slot(g, &g->srv[p->server], p->vcpu);

			if (w)
				xg_set_wait(g, &g->srv[p->server], p->vcpu, w);
			else
				xg_unmask(g, (evtchn_port_t)port);
		}
		if (!g->serving)
			return;
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		log_rl(&g->rl, LOG_ERR, "xen: %s: reading pending events: %s", g->name,
		       strerror(errno));
}

/* ---- interrupts ---- */

/*
 * libxl declares the SPIs edge-rising, and on Arm every level-1 write injects one: Xen 4.17's
 * vGIC ignores level 0 for SPIs and the new vGIC latches an edge on each 1. So one DM op per
 * interrupt (the irqfd's DM op is the same one), no lowering.
 */
void xen_window_raise_irq(struct xen_window *w)
{
	struct xen_guest *g = w->g;

	if (g->fp && fastpath_raise(g->fp, w->index)) {
		g->st.irqs++;
		return;
	}
	if (xendevicemodel_set_irq_level(g->dm, (domid_t)g->opts.domid, w->irq, 1) < 0) {
		g->st.irq_errors++;
		log_rl(&g->rl, LOG_WARNING, "xen: %s: SPI %u for %s: %s", g->name, w->irq,
		       w->name, strerror(errno));
		return;
	}
	g->st.irqs++;
}

/* ---- servers ---- */

static void xg_log_teardown(struct xen_guest *g, const char *what, int err);

/* Map the server's ioreq frames (ours, or a previous instance's server we take over). */
static int xg_map_frames(struct xen_guest *g, struct xg_server *s)
{
	void *addr = NULL;

	s->res = xenforeignmemory_map_resource(g->fm, (domid_t)g->opts.domid,
					       XENMEM_resource_ioreq_server, s->id,
					       XENMEM_resource_ioreq_server_frame_ioreq(0),
					       g->nr_frames, &addr, PROT_READ | PROT_WRITE, 0);
	if (!s->res)
		return -errno;
	s->slots = addr;
	/*
	 * Linux's privcmd finds an ioeventfd's handler by the ioreq page's address: one at the
	 * address of a previous instance's registration the kernel still holds would join that
	 * dead one. Map again elsewhere (the first mapping is kept until then).
	 */
	if (g->stale_va && (uintptr_t)addr == g->stale_va) {
		xenforeignmemory_resource_handle *first = s->res;
		int rc;

		s->res = NULL;
		s->slots = NULL;
		rc = xg_map_frames(g, s);
		if (xenforeignmemory_unmap_resource(g->fm, first) < 0)
			xg_log_teardown(g, "unmapping the ioreq frames", errno);
		return rc;
	}
	return 0;
}

static int xg_create_server(struct xen_guest *g, unsigned server)
{
	struct xg_server *s = &g->srv[server];
	int rc;

	/* Arm has no buffered ioreqs: every access is synchronous. */
	if (xendevicemodel_create_ioreq_server(g->dm, (domid_t)g->opts.domid,
					       HVM_IOREQSRV_BUFIOREQ_OFF, &s->id) < 0)
		return -errno;
	s->created = true;
	g->rec->id[server] = s->id;
	XG_ORDER();
	g->rec->created[server] = 1;
	if ((rc = xg_map_frames(g, s)) < 0)
		return rc;
	if (xendevicemodel_set_ioreq_server_state(g->dm, (domid_t)g->opts.domid, s->id, 1) < 0)
		return -errno;
	return 0;
}

/* Add s's ports to the dispatch table (kept sorted). */
static int xg_index_ports(struct xen_guest *g, unsigned server)
{
	struct xg_server *s = &g->srv[server];
	struct xg_port *p = realloc(g->ports, (g->nports + s->nr_bound) * sizeof(*p));

	if (!p)
		return -ENOMEM;
	g->ports = p;
	for (unsigned v = 0; v < s->nr_bound; v++)
		g->ports[g->nports++] = (struct xg_port){ .port = s->port[v],
							  .server = (uint16_t)server, .vcpu = v };
	qsort(g->ports, g->nports, sizeof(g->ports[0]), xg_port_cmp);
	return 0;
}

static uint32_t *xg_rec_port(struct xen_guest *g, unsigned server, unsigned vcpu)
{
	return &g->rec->port[server * g->nr_vcpus + vcpu];
}

static int xg_bind_ports(struct xen_guest *g, unsigned server)
{
	struct xg_server *s = &g->srv[server];

	s->port = calloc(g->nr_vcpus, sizeof(*s->port));
	s->wait = calloc(g->nr_vcpus, sizeof(*s->wait));
	s->held = calloc(g->nr_vcpus, sizeof(*s->held));
	s->waitwin = calloc(g->nr_vcpus, sizeof(*s->waitwin));
	if (!s->port || !s->wait || !s->held || !s->waitwin)
		return -ENOMEM;
	for (unsigned i = 0; i < g->nr_vcpus; i++) {
		/* Read once: the page is shared with Xen. */
		uint32_t remote = ((volatile ioreq_t *)&s->slots[i])->vp_eport;
		xenevtchn_port_or_error_t p;

		/* A handle taken over still has the previous instance's bindings. */
		if (s->adopted && g->evtchn_inherited) {
			s->port[i] = *xg_rec_port(g, server, i);
			s->nr_bound = i + 1;
			continue;
		}
		p = xenevtchn_bind_interdomain(g->xce, g->opts.domid, remote);
		if (p < 0) {
			int err = errno ? errno : EIO;

			/* An adopted notify server's: xg_adopt_notify() says what it means. */
			if (!(s->adopted && server == XG_NOTIFY && err == EINVAL))
				log_err("xen: %s: binding vCPU %u port %u: %s", g->name, i, remote,
					strerror(err));
			return -err;
		}
		s->port[i] = (evtchn_port_t)p;
		*xg_rec_port(g, server, i) = (uint32_t)p;
		s->nr_bound = i + 1;
	}
	return xg_index_ports(g, server);
}

/*
 * A teardown call that failed: expected once the domain is gone, a warning otherwise. Xen
 * refuses calls on a dying domain's servers with ENOENT (ESRCH once it is gone) before
 * xenstored's @releaseDomain may have reached us (a stop just as the guest powers off):
 * ask xenstore then, once, and keep the answer for the rest of the teardown.
 */
static void xg_log_teardown(struct xen_guest *g, const char *what, int err)
{
	if (!g->dead && (err == ENOENT || err == ESRCH) && !xen_domain_alive(g->opts.domid)) {
		log_info("xen: %s: domain %u is gone", g->name, g->opts.domid);
		g->dead = true;
	}
	if (g->dead)
		log_debug("xen: %s (domain gone): %s", what, strerror(err));
	else
		xg_log_call(what, err);
}

static void xg_unindex_ports(struct xen_guest *g, unsigned server)
{
	unsigned n = 0;

	for (unsigned i = 0; i < g->nports; i++)
		if (g->ports[i].server != server)
			g->ports[n++] = g->ports[i];
	g->nports = n;
}

/* Forget a server's per-vCPU ports and slot states (nothing is unbound). */
static void xg_forget_vcpus(struct xg_server *s)
{
	s->nr_bound = 0;
	free(s->port);
	free(s->wait);
	free(s->held);
	free(s->waitwin);
	s->port = NULL;
	s->wait = NULL;
	s->held = NULL;
	s->waitwin = NULL;
}

static void xg_unbind_ports(struct xen_guest *g, unsigned server)
{
	struct xg_server *s = &g->srv[server];

	xg_unindex_ports(g, server);
	for (unsigned i = s->nr_bound; i-- > 0;)
		if (xenevtchn_unbind(g->xce, s->port[i]) < 0)
			xg_log_teardown(g, "unbinding a vCPU port", errno);
	for (unsigned i = 0; s->wait && i < s->nr_bound; i++)
		g->nbusy -= s->wait[i] == XG_WAIT_TAKE || s->wait[i] == XG_WAIT_ANSWER;
	xg_forget_vcpus(s);
}

static void xg_destroy_server(struct xen_guest *g, unsigned server)
{
	struct xg_server *s = &g->srv[server];

	if (s->created && g->rec)
		g->rec->created[server] = 0;
	XG_ORDER();
	xg_unbind_ports(g, server);
	if (s->res && xenforeignmemory_unmap_resource(g->fm, s->res) < 0)
		xg_log_teardown(g, "unmapping the ioreq frames", errno);
	s->res = NULL;
	s->slots = NULL;
	if (s->created &&
	    xendevicemodel_destroy_ioreq_server(g->dm, (domid_t)g->opts.domid, s->id) < 0)
		xg_log_teardown(g, "destroying the ioreq server", errno);
	s->created = false;
	s->adopted = false;
	s->portless = false;
	s->kernel = NULL;
}

/* Take over the server a previous instance recorded: the same id, its frames mapped again. */
static int xg_adopt_server(struct xen_guest *g, unsigned server)
{
	struct xg_server *s = &g->srv[server];

	s->id = g->rec->id[server];
	s->created = true;
	s->adopted = true;
	return xg_map_frames(g, s);
}

/* Create the server, or take over the one the previous instance recorded (adopt). */
static int xg_open_server(struct xen_guest *g, unsigned server, bool adopt)
{
	int rc = adopt ? xg_adopt_server(g, server) : xg_create_server(g, server);

	if (rc < 0) {
		log_err("xen: %s: setting up the %s ioreq server (%u vCPUs, %u frames): %s",
			g->name, server == XG_MAIN ? "main" : "notify", g->nr_vcpus, g->nr_frames,
			strerror(-rc));
		return rc;
	}
	return xg_bind_ports(g, server);
}

/* ---- stage 1: open ---- */

/* Opened with the other handles (before capabilities go); its absence only costs speed. */
static void xg_open_privcmd(struct xen_guest *g)
{
	int rc;

	if (g->opts.fastpath == XEN_FASTPATH_OFF) {
		snprintf(g->fp_why, sizeof(g->fp_why), "%s",
			 g->opts.fastpath_off_why ? g->opts.fastpath_off_why : "notify_fastpath = off");
		return;
	}
	rc = xen_privcmd_open(g->opts.domid, &g->pc);
	if (rc < 0)
		snprintf(g->fp_why, sizeof(g->fp_why), "opening /dev/xen/privcmd: %s",
			 strerror(-rc));
}

/*
 * The event channel handle: the previous instance's from the fd store (its bindings intact,
 * events queued while nobody read them still there), else a new one.
 */
static xenevtchn_handle *xg_open_evtchn(struct xen_guest *g)
{
	int fd = fdstore_take(g->opts.store, "evtchn");
	xenevtchn_handle *xce;

	if (fd >= 0) {
		xce = xenevtchn_fdopen(NULL, fd, 0);
		if (xce) {
			g->evtchn_inherited = true;
			return xce;
		}
		log_warn("xen: %s: the stored event channel handle cannot be reopened (%s); a new "
			 "one is bound", g->name, strerror(errno));
		close(fd);
	}
	return xenevtchn_open(NULL, 0);
}

static int xg_open_handles(struct xen_guest *g)
{
	g->dm = xendevicemodel_open(NULL, 0);
	if (!g->dm)
		return -errno ? -errno : -EIO;
	g->fm = xenforeignmemory_open(NULL, 0);
	if (!g->fm)
		return -errno ? -errno : -EIO;
	g->xce = xg_open_evtchn(g);
	if (!g->xce)
		return -errno ? -errno : -EIO;
	xg_open_privcmd(g);
	g->gt = xengnttab_open(NULL, 0);
	if (!g->gt) {
		/* Only a guest that uses grant addresses needs it. */
		if (g->opts.grant_usage)
			return -errno ? -errno : -EIO;
		log_info("xen: %s: no grant table device (%s); foreign mappings only", g->name,
			 strerror(errno));
		return 0;
	}
	/* Obsolete on current kernels (no per-handle limit), so a failure is not fatal. */
	if (xengnttab_set_max_grants(g->gt, GMEM_XEN_MAX_GRANTS) < 0)
		log_debug("xen: xengnttab_set_max_grants: %s", strerror(errno));
	return 0;
}

static int xg_count_vcpus(struct xen_guest *g)
{
	unsigned n = 0;

	if (xendevicemodel_nr_vcpus(g->dm, (domid_t)g->opts.domid, &n) < 0)
		return -errno;
	if (n == 0 || n > XG_MAX_VCPUS) {
		log_err("xen: %s: implausible vCPU count %u", g->name, n);
		return -EINVAL;
	}
	g->nr_vcpus = n;
	g->nr_frames = (n + XG_SLOTS_PER_PAGE - 1) / XG_SLOTS_PER_PAGE;
	return 0;
}

/* The dispatch loop drains until EAGAIN, so the fd must not block. */
static int xg_fd_nonblock(struct xen_guest *g)
{
	int fd = xenevtchn_fd(g->xce);
	int fl = fd < 0 ? -1 : fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno ? -errno : -EBADF;
	return 0;
}

static size_t xg_record_size(unsigned nr_vcpus)
{
	return sizeof(struct xg_state) + (size_t)XG_NSERVERS * nr_vcpus * sizeof(uint32_t);
}

/*
 * The record of this guest's Xen side: a previous instance's, complete (`ready`) and for as
 * many vCPUs, is taken over; anything else is started afresh. Without persistence, a private
 * one (the code writes it all the same).
 */
static int xg_open_record(struct xen_guest *g)
{
	size_t size = xg_record_size(g->nr_vcpus);
	bool adopted;

	g->rec = persist_region(g->opts.persist, "xen", size, &adopted);
	if (!g->rec) {
		g->rec = calloc(1, size);
		g->rec_private = true;
		if (!g->rec)
			return -ENOMEM;
	}
	g->adopting = adopted && g->rec->ready && g->rec->nr_vcpus == g->nr_vcpus &&
		      g->rec->created[XG_MAIN];
	if (g->adopting && g->rec->fastpath)
		g->stale_va = g->rec->notify_va;
	if (!g->adopting) {
		const struct xg_state *old = adopted ? g->rec
					   : persist_previous(g->opts.persist, "xen", size);

		/* Its servers are removed once the handles are open (xg_clean_previous()). */
		if (old && old->nr_vcpus == g->nr_vcpus &&
		    (old->created[XG_MAIN] || old->created[XG_NOTIFY])) {
			g->prev = malloc(size);
			if (g->prev)
				memcpy(g->prev, old, size);
		}
		memset(g->rec, 0, size);
		g->rec->nr_vcpus = g->nr_vcpus;
		/* Bindings of a handle whose servers are not taken over belong to nobody now. */
		if (g->evtchn_inherited) {
			xenevtchn_close(g->xce);
			g->evtchn_inherited = false;
			g->xce = xenevtchn_open(NULL, 0);
			if (!g->xce)
				return -errno ? -errno : -EIO;
		}
	}
	return 0;
}

static void xg_clean_previous(struct xen_guest *g);

/*
 * The previous instance's notify server. Without the fd store its ports are bound again, but
 * on a dom0 kernel with the fast path they are not free: that instance's ioeventfds, which
 * nobody could deassign, share the ports' IRQs in the kernel and keep them bound after its
 * event channel handle closed, so Xen refuses the bind (EINVAL). The server is then taken over
 * without ports (portless): xen_guest_start() routes its kick dwords back to the main server
 * and replaces it with a new one. Until then those kernel handlers answer its kicks (into
 * eventfds nobody reads); every queue is looked at after the takeover.
 */
static int xg_adopt_notify(struct xen_guest *g)
{
	struct xg_server *s = &g->srv[XG_NOTIFY];
	int rc = xg_open_server(g, XG_NOTIFY, true);

	if (rc != -EINVAL || !s->adopted || g->evtchn_inherited || !g->rec->fastpath)
		return rc;
	xg_unbind_ports(g, XG_NOTIFY);
	s->portless = true;
	log_notice("xen: %s: the previous instance's notify server %u keeps its ports (its "
		   "ioeventfds hold them in the kernel): it is replaced", g->name,
		   (unsigned)s->id);
	return 0;
}

static int xg_open_stages(struct xen_guest *g)
{
	int rc;

	if ((rc = xg_open_handles(g)) < 0) {
		log_err("xen: %s: opening the Xen interfaces: %s", g->name, strerror(-rc));
		return rc;
	}
	if ((rc = xg_count_vcpus(g)) < 0) {
		log_err("xen: %s: counting vCPUs: %s", g->name, strerror(-rc));
		return rc;
	}
	if ((rc = xg_open_record(g)) < 0)
		return rc;
	xg_clean_previous(g);
	g->gm = gmem_xen_create(g->fm, g->gt, g->opts.domid, g->opts.map_cache_mib,
				g->opts.premap);
	if (!g->gm)
		return -ENOMEM;
	if ((rc = xg_open_server(g, XG_MAIN, g->adopting)) < 0)
		return rc;
	/* A notify server the previous instance had: its dwords are routed there still. */
	if (g->adopting && g->rec->created[XG_NOTIFY] && (rc = xg_adopt_notify(g)) < 0)
		return rc;
	if ((rc = xg_fd_nonblock(g)) < 0) {
		log_err("xen: %s: event channel fd: %s", g->name, strerror(-rc));
		return rc;
	}
	return 0;
}

static int xg_open_once(struct ev_loop *loop, const struct xen_opts *opts, struct xen_guest **out,
			bool *adopting);

int xen_guest_open(struct ev_loop *loop, const struct xen_opts *opts, struct xen_guest **out)
{
	bool adopting = false;
	int rc = xg_open_once(loop, opts, out, &adopting);

	/*
	 * A take-over that failed half-way (a server of the record is gone, a port will not
	 * bind): what was taken over was answered and destroyed when it was closed, and the
	 * record says nothing is left; start afresh.
	 */
	if (rc < 0 && adopting) {
		log_warn("xen: the previous instance's ioreq servers cannot be taken over (%s); "
			 "serving the guest afresh", strerror(-rc));
		rc = xg_open_once(loop, opts, out, &adopting);
	}
	return rc;
}

static int xg_open_once(struct ev_loop *loop, const struct xen_opts *opts, struct xen_guest **out,
			bool *adopting)
{
	struct xen_guest *g = calloc(1, sizeof(*g));
	int rc;

	*out = NULL;
	if (!g) {
		log_err("xen: out of memory");
		return -ENOMEM;
	}
	g->loop = loop;
	g->opts = *opts;
	g->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	ev_init(&g->busy_w, xg_busy_cb);
	g->busy_w.repeat = XG_BUSY_RETRY_S;
	if (xen_domain_name(opts->domid, g->name, sizeof(g->name)) < 0)
		snprintf(g->name, sizeof(g->name), "domain %u", opts->domid);
	rc = xg_open_stages(g);
	*adopting = g->adopting;
	if (rc < 0) {
		xen_guest_close(g);
		return rc;
	}
	g->st.nr_vcpus = g->nr_vcpus;
	g->st.nr_frames = g->nr_frames;
	if (g->adopting)
		log_notice("xen: %s: took over ioreq server %u%s from the previous instance (%u "
			   "vCPUs, ports %s)", g->name, g->srv[XG_MAIN].id,
			   g->srv[XG_NOTIFY].created ? " and its notify server" : "", g->nr_vcpus,
			   g->evtchn_inherited ? "still bound" : "bound again");
	else
		log_info("xen: %s: ioreq server %u, %u vCPUs, %u ioreq frames", g->name,
			 g->srv[XG_MAIN].id, g->nr_vcpus, g->nr_frames);
	*out = g;
	return 0;
}

struct gmem *xen_guest_gmem(struct xen_guest *g)
{
	return g->gm;
}

const char *xen_guest_name(const struct xen_guest *g)
{
	return g->name;
}

bool xen_guest_grant_usage(const struct xen_guest *g)
{
	return g->opts.grant_usage;
}

/* ---- stage 2: windows ---- */

static int xg_route(struct xen_guest *g, unsigned server, bool map, uint64_t start,
		    uint64_t end)
{
	domid_t d = (domid_t)g->opts.domid;
	ioservid_t id = g->srv[server].id;
	int rc = map ? xendevicemodel_map_io_range_to_ioreq_server(g->dm, d, id, XG_MMIO_SPACE,
								   start, end)
		     : xendevicemodel_unmap_io_range_from_ioreq_server(g->dm, d, id,
								       XG_MMIO_SPACE, start, end);

	return rc < 0 ? -errno : 0;
}

static bool xg_window_overlaps(const struct xen_guest *g, uint64_t base)
{
	for (unsigned i = 0; i < g->nwin; i++)
		if (base < g->win[i].base + PLATFORM_MMIO_WINDOW &&
		    g->win[i].base < base + PLATFORM_MMIO_WINDOW)
			return true;
	return false;
}

int xen_guest_add_window(struct xen_guest *g, const struct xen_window_desc *d,
			 struct xen_window **out)
{
	uint64_t base = d->base;
	struct xen_window *w;
	int rc;

	*out = NULL;
	if (g->nwin >= XG_MAX_WINDOWS || base > UINT64_MAX - PLATFORM_MMIO_WINDOW ||
	    xg_window_overlaps(g, base) || d->irq < 32) {
		log_err("xen: %s: %s: bad or overlapping window 0x%llx irq %u", g->name, d->name,
			(unsigned long long)base, d->irq);
		return -EINVAL;
	}
	if (g->adopting) {
		/* Routed by the previous instance already: the same window at the same place. */
		if (g->nwin >= g->rec->nwin || g->rec->win[g->nwin].base != base) {
			log_err("xen: %s: %s: window 0x%llx is not the previous instance's",
				g->name, d->name, (unsigned long long)base);
			return -EINVAL;
		}
	} else {
		rc = xg_route(g, XG_MAIN, true, base, base + PLATFORM_MMIO_WINDOW - 1);
		if (rc < 0) {
			log_err("xen: %s: %s: routing 0x%llx: %s", g->name, d->name,
				(unsigned long long)base, strerror(-rc));
			return rc;
		}
		g->rec->win[g->nwin].base = base;
		g->rec->win[g->nwin].irq = d->irq;
		g->rec->win[g->nwin].nq = d->nqueues;
		XG_ORDER();
		g->rec->nwin = g->nwin + 1;
	}
	w = &g->win[g->nwin];
	*w = (struct xen_window){ .g = g, .index = g->nwin, .base = base, .irq = d->irq,
				  .nqueues = d->nqueues, .ops = d->ops, .opaque = d->opaque,
				  .routed = true, .split = g->adopting && g->rec->split };
	snprintf(w->name, sizeof(w->name), "%s", d->name);
	g->nwin++;
	*out = w;
	return 0;
}

/* ---- stage 3: start ---- */

static int xg_restrict(struct xen_guest *g)
{
	domid_t d = (domid_t)g->opts.domid;

	/*
	 * From here on a compromised daemon can only touch this guest. xenstore and the grant
	 * device have no such restriction: xenstore access stays as privileged as the process.
	 */
	if (xendevicemodel_restrict(g->dm, d) < 0)
		return -errno;
	if (xenforeignmemory_restrict(g->fm, d) < 0)
		return -errno;
	if (xenevtchn_restrict(g->xce, d) < 0)
		return -errno;
	return 0;
}

static void xg_death_cb(void *opaque)
{
	struct xen_guest *g = opaque;

	/* info: the daemon reports the consequence (one notice line as it exits). */
	log_info("xen: %s: domain %u is gone", g->name, g->opts.domid);
	g->dead = true;
	if (g->serving) {
		ev_io_stop(g->loop, &g->evtchn_w);
		ev_timer_stop(g->loop, &g->busy_w);
		g->serving = false;
	}
	if (g->on_death)
		g->on_death(g->death_opaque);
}

static void xg_fastpath_why(struct xen_guest *g, int rc)
{
	if (rc == -ENOTTY)
		snprintf(g->fp_why, sizeof(g->fp_why), "the dom0 kernel has no privcmd ioeventfd "
			 "(Linux < 6.7 or no CONFIG_XEN_PRIVCMD_EVENTFD)");
	else
		snprintf(g->fp_why, sizeof(g->fp_why), "assigning the eventfds: %s", strerror(-rc));
}

/* [base + 0x50, base + 0x54): the kick dword, the notify server's part of a window. */
static uint64_t xg_kick(const struct xen_window *w)
{
	return w->base + SLOT_NOTIFY_OFF;
}

/*
 * Give the notify server each window's kick dword: first route it there (where the two
 * overlap, Xen picks one server or the other, both answer a kick), then take it from the
 * main server, which splits that window's range in two. No access finds no server.
 */
static int xg_split_windows(struct xen_guest *g)
{
	for (unsigned i = 0; i < g->nwin; i++) {
		struct xen_window *w = &g->win[i];
		uint64_t k = xg_kick(w);
		int rc = xg_route(g, XG_NOTIFY, true, k, k + SLOT_NOTIFY_LEN - 1);

		if (rc < 0)
			return rc;
		w->split = true;
		g->rec->split = 1;
		rc = xg_route(g, XG_MAIN, false, k, k + SLOT_NOTIFY_LEN - 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The reverse: the main server takes each kick dword back, then the notify server lets go. */
static void xg_join_windows(struct xen_guest *g)
{
	for (unsigned i = g->nwin; i-- > 0;) {
		struct xen_window *w = &g->win[i];
		uint64_t k = xg_kick(w);
		int rc;

		if (!w->split)
			continue;
		if (w->routed && (rc = xg_route(g, XG_MAIN, true, k, k + SLOT_NOTIFY_LEN - 1)) < 0 &&
		    rc != -EEXIST)
			xg_log_teardown(g, "routing a kick dword back", -rc);
		if ((rc = xg_route(g, XG_NOTIFY, false, k, k + SLOT_NOTIFY_LEN - 1)) < 0)
			xg_log_teardown(g, "unrouting a kick dword", -rc);
		w->split = false;
	}
	if (g->rec)
		g->rec->split = 0;
}

static int xg_fastpath_assign(struct xen_guest *g)
{
	struct fastpath_params p = {
		.loop = g->loop, .pc = g->pc, .domid = g->opts.domid, .name = g->name,
		.ioreq_page = g->srv[XG_NOTIFY].slots, .ports = g->srv[XG_NOTIFY].port,
		.nr_vcpus = g->nr_vcpus, .store = g->opts.store,
	};
	struct fastpath_window wins[XG_MAX_WINDOWS];
	int rc;

	for (unsigned i = 0; i < g->nwin; i++) {
		const struct xen_window *w = &g->win[i];

		wins[i] = (struct fastpath_window){ .name = w->name, .base = w->base, .irq = w->irq,
						    .nqueues = w->nqueues, .ops = w->ops,
						    .opaque = w->opaque };
	}
	rc = fastpath_start(&p, wins, g->nwin, &g->fp);
	if (rc == 0) {
		g->rec->notify_va = (uintptr_t)g->srv[XG_NOTIFY].slots;
		XG_ORDER();
		g->rec->fastpath = 1;
	}
	return rc;
}

/*
 * The registrations of the instance that wrote r, which the kernel keeps after it died:
 * deassigned with the eventfds the fd store kept, as they were assigned (its page address and
 * windows). True when none is left.
 */
static bool xg_fastpath_forget_rec(struct xen_guest *g, const struct xg_state *r)
{
	struct fastpath_params p = {
		.pc = g->pc, .domid = g->opts.domid, .name = g->name,
		.ports = g->srv[XG_NOTIFY].port, .nr_vcpus = g->nr_vcpus, .store = g->opts.store,
	};
	struct fastpath_window wins[XG_MAX_WINDOWS];
	unsigned n, want = 0, nwin = r->nwin < XG_MAX_WINDOWS ? r->nwin : XG_MAX_WINDOWS;

	for (unsigned i = 0; i < nwin; i++) {
		wins[i] = (struct fastpath_window){ .base = r->win[i].base, .irq = r->win[i].irq,
						    .nqueues = r->win[i].nq };
		want += r->win[i].nq;
	}
	n = g->pc ? fastpath_forget(&p, r->notify_va, wins, nwin) : 0;
	return n == want;
}

/* Taking over: the previous instance's registrations go, as far as the fd store allows. */
static void xg_fastpath_forget(struct xen_guest *g)
{
	unsigned want = 0;

	if (!g->adopting || !g->rec->fastpath)
		return;
	for (unsigned i = 0; i < g->rec->nwin && i < XG_MAX_WINDOWS; i++)
		want += g->rec->win[i].nq;
	bool all = xg_fastpath_forget_rec(g, g->rec);

	g->rec->fastpath = 0;
	if (all) {
		log_info("xen: %s: the previous instance's %u ioeventfds removed", g->name, want);
		return;
	}
	/*
	 * The kernel keeps the others (their eventfds were not stored), and with them the ports
	 * of their notify server (xg_adopt_notify(), which replaces it). Ours are made at another
	 * page address (stale_va), on new ports, and the kernel tells them apart. A kick they
	 * took while no instance ran is lost with its vCPU (docs/operations.md).
	 */
	log_notice("xen: %s: the previous instance's %u ioeventfds stay in the kernel (no file "
		   "descriptor store kept them); new ones are made", g->name, want);
}

/* The kernel lets go of our eventfds: the last deassign waits for a running handler. */
static void xg_fastpath_stop(struct xen_guest *g)
{
	fastpath_stop(g->fp, g->dead);
	g->fp = NULL;
	g->srv[XG_NOTIFY].kernel = NULL;
	if (g->rec)
		g->rec->fastpath = 0;
}

/*
 * A server about to be destroyed while the guest lives: a vCPU whose request waits in it would
 * wait for good (Xen does not complete it), so every READY request gets an answer, without
 * being served (reads see all-ones, writes are dropped). Nothing else shares its slots now.
 */
static void xg_drain_server(struct xen_guest *g, unsigned server)
{
	struct xg_server *s = &g->srv[server];

	for (unsigned v = 0; !g->dead && s->slots && v < s->nr_bound; v++) {
		ioreq_t req;

		if (slot_take(&s->slots[v], NULL, &req, &g->slot) != SLOT_OURS)
			continue;
		if (xg_answered(g, s, v, slot_answer(&s->slots[v], NULL, &req,
						     req.dir == IOREQ_READ ? ~UINT64_C(0) : 0,
						     &g->slot)))
			g->st.drained++;
	}
}

/*
 * The servers a previous instance made and that are not taken over: answered and destroyed
 * (Xen does not complete a request whose server goes), so the new ones serve the windows. Its
 * ioeventfds go first, with the eventfds the fd store kept.
 */
static void xg_clean_previous(struct xen_guest *g)
{
	const struct xg_state *r = g->prev;
	unsigned server[] = { XG_NOTIFY, XG_MAIN };

	if (!r)
		return;
	if (r->fastpath)
		xg_fastpath_forget_rec(g, r);
	for (unsigned i = 0; i < ARRAY_SIZE(server); i++) {
		unsigned k = server[i];
		struct xg_server *s = &g->srv[k];

		if (!r->created[k])
			continue;
		s->id = r->id[k];
		s->created = true;
		/* Gone already (the domain was rebuilt, someone destroyed it): nothing to answer. */
		if (xg_map_frames(g, s) == 0 && xg_bind_ports(g, k) == 0)
			xg_drain_server(g, k);
		log_notice("xen: %s: removing ioreq server %u, which the previous instance left and "
			   "this one does not take over", g->name, (unsigned)s->id);
		xg_destroy_server(g, k);
	}
	free(g->prev);
	g->prev = NULL;
}

/* Undo what xg_fastpath_start() did, in reverse; safe on any part of it. */
static void xg_fastpath_undo(struct xen_guest *g)
{
	xg_join_windows(g);
	xg_fastpath_stop(g);
	xg_drain_server(g, XG_NOTIFY);
	xg_destroy_server(g, XG_NOTIFY);
}

/* Try the fast path; on any failure everything stays on the main server, with fp_why set. */
static void xg_fastpath_start(struct xen_guest *g)
{
	int rc;

	if (!g->pc)
		return;   /* fp_why says why */
	if (g->nr_frames != 1) {
		/* The kernel's handler indexes the first ioreq page only. */
		snprintf(g->fp_why, sizeof(g->fp_why), "%u vCPUs: the kernel's ioeventfd reads "
			 "one ioreq page (128 vCPUs)", g->nr_vcpus);
		return;
	}
	if (g->nwin == 0) {
		snprintf(g->fp_why, sizeof(g->fp_why), "no device");
		return;
	}
	/* A new notify server, or the previous instance's (unrouted by xen_guest_start()). */
	if (!g->srv[XG_NOTIFY].created) {
		rc = xg_open_server(g, XG_NOTIFY, false);
		if (rc < 0) {
			snprintf(g->fp_why, sizeof(g->fp_why),
				 "creating the notify ioreq server: %s", strerror(-rc));
			xg_destroy_server(g, XG_NOTIFY);
			return;
		}
	}
	rc = xg_fastpath_assign(g);
	if (rc < 0) {
		xg_fastpath_why(g, rc);
		xg_fastpath_undo(g);
		return;
	}
	g->srv[XG_NOTIFY].kernel = fastpath_kernel(g->fp);
	rc = xg_split_windows(g);
	if (rc < 0) {
		snprintf(g->fp_why, sizeof(g->fp_why), "routing the kick registers: %s",
			 strerror(-rc));
		xg_fastpath_undo(g);
	}
}

bool xen_guest_notify_path(const struct xen_guest *g, const char **why)
{
	if (why)
		*why = g->fp ? "" : g->fp_why;
	return g->fp != NULL;
}

static void xg_log_notify_path(const struct xen_guest *g)
{
	if (g->fp)
		log_notice("xen: %s: notify path: privcmd ioeventfd+irqfd (%u queues, kicks on "
			   "ioreq server %u)", g->name, fastpath_queues(g->fp),
			   g->srv[XG_NOTIFY].id);
	else
		log_notice("xen: %s: notify path: ioreq (%s)", g->name, g->fp_why);
}

int xen_guest_start(struct xen_guest *g, void (*on_death)(void *opaque), void *opaque)
{
	int rc = xg_restrict(g);

	if (rc < 0) {
		log_err("xen: %s: restricting handles to domain %u: %s", g->name, g->opts.domid,
			strerror(-rc));
		return rc;
	}
	xg_fastpath_forget(g);
	/*
	 * The previous instance's notify server is unrouted while it gets its new ioeventfds, as
	 * a new one is: a kick that reached it before them would be left to a kernel handler
	 * that never heard of it. What reached it meanwhile is answered (the devices look at
	 * every queue when they are taken over). Without the fast path it goes.
	 */
	if (g->srv[XG_NOTIFY].created) {
		xg_join_windows(g);
		xg_drain_server(g, XG_NOTIFY);
		if (!g->pc || g->srv[XG_NOTIFY].portless)
			xg_fastpath_undo(g);
	}
	xg_fastpath_start(g);
	if (!g->fp && g->opts.fastpath == XEN_FASTPATH_ON)
		return -EOPNOTSUPP;
	xg_log_notify_path(g);
	g->on_death = on_death;
	g->death_opaque = opaque;
	ev_io_init(&g->evtchn_w, xg_evtchn_cb, xenevtchn_fd(g->xce), EV_READ);
	ev_io_start(g->loop, &g->evtchn_w);
	g->serving = true;
	g->death = xen_death_watch_start(g->loop, g->opts.domid, xg_death_cb, g);
	if (!g->death) {
		ev_io_stop(g->loop, &g->evtchn_w);
		g->serving = false;
		return -EIO;
	}
	/* The handle and its bindings outlive us in the fd store (a restart keeps them). */
	fdstore_keep(g->opts.store, "evtchn", xenevtchn_fd(g->xce));
	XG_ORDER();
	g->rec->ready = 1;
	return 0;
}

bool xen_guest_adopted(const struct xen_guest *g)
{
	return g->adopting;
}

void xen_guest_resume(struct xen_guest *g)
{
	unsigned answered = 0;

	for (unsigned i = 0; i < XG_NSERVERS; i++) {
		struct xg_server *s = &g->srv[i];

		for (unsigned v = 0; v < s->nr_bound; v++) {
			unsigned w;

			if (s->wait[v])
				continue;
			answered += slot_state(&s->slots[v]) == STATE_IOREQ_READY;
			w = xg_serve_slot(g, s, v);
			if (w)
				xg_set_wait(g, s, v, w);
			else
				xg_unmask(g, s->port[v]);
		}
	}
	log_notice("xen: %s: serving again; %u requests were waiting in the vCPU slots", g->name,
		   answered);
}

/* ---- teardown ---- */

static void xg_unroute_windows(struct xen_guest *g)
{
	for (unsigned i = g->nwin; i-- > 0;) {
		struct xen_window *w = &g->win[i];
		int rc;

		if (w->routed &&
		    (rc = xg_route(g, XG_MAIN, false, w->base, w->base + PLATFORM_MMIO_WINDOW - 1)) < 0)
			xg_log_teardown(g, "unmapping an mmio window", -rc);
		w->routed = false;
	}
	g->nwin = 0;
}

static void xg_close_handles(struct xen_guest *g)
{
	xen_privcmd_close(g->pc);
	g->pc = NULL;
	if (g->gt)
		xengnttab_close(g->gt);
	if (g->xce)
		xenevtchn_close(g->xce);
	if (g->fm)
		xenforeignmemory_close(g->fm);
	if (g->dm)
		xendevicemodel_close(g->dm);
	g->gt = NULL;
	g->xce = NULL;
	g->fm = NULL;
	g->dm = NULL;
}

/* No more events, timers or death watch: nothing of the loop reaches g any more. */
static void xg_stop_serving(struct xen_guest *g)
{
	xen_death_watch_stop(g->death);
	g->death = NULL;
	if (g->serving)
		ev_io_stop(g->loop, &g->evtchn_w);
	ev_timer_stop(g->loop, &g->busy_w);
	g->serving = false;
}

/* The end of close and detach, once the servers are destroyed or left. */
static void xg_free(struct xen_guest *g)
{
	free(g->ports);
	g->ports = NULL;
	gmem_destroy(g->gm);
	g->gm = NULL;
	xg_close_handles(g);
	if (g->rec_private)
		free(g->rec);
	free(g->prev);
	free(g);
}

void xen_guest_close(struct xen_guest *g)
{
	if (!g)
		return;
	/* Nothing of it is to be taken over any more (a crash part-way included). */
	if (g->rec)
		g->rec->ready = 0;
	xg_stop_serving(g);
	/* Before the ports and the ioreq page the kernel's handlers use go. */
	xg_fastpath_undo(g);
	xg_unroute_windows(g);
	xg_drain_server(g, XG_MAIN);
	xg_destroy_server(g, XG_MAIN);
	xg_free(g);
}

/* Unmap a server's frames, keep it (and its ports, when the fd store has the handle). */
static void xg_leave_server(struct xen_guest *g, unsigned server)
{
	struct xg_server *s = &g->srv[server];

	if (s->res && xenforeignmemory_unmap_resource(g->fm, s->res) < 0)
		xg_log_teardown(g, "unmapping the ioreq frames", errno);
	s->res = NULL;
	s->slots = NULL;
	xg_forget_vcpus(s);
}

void xen_guest_detach(struct xen_guest *g)
{
	if (!g)
		return;
	xg_stop_serving(g);
	xg_fastpath_stop(g);
	for (unsigned i = 0; i < XG_NSERVERS; i++)
		xg_leave_server(g, i);
	log_notice("xen: %s: left ioreq server %u to the next instance", g->name,
		   g->srv[XG_MAIN].id);
	xg_free(g);
}

/* ---- maintenance ---- */

void xen_guest_invalidate(struct xen_guest *g)
{
	gmem_invalidate(g->gm);
}

void xen_guest_get_stats(struct xen_guest *g, struct xen_guest_stats *st)
{
	struct gmem_xen_stats ms;

	*st = g->st;
	st->left_to_kernel = g->slot.kernel_left;
	st->kernel_waits = g->slot.kernel_waits;
	st->kernel_busy = g->slot.kernel_busy;
	st->slot_unstable = g->slot.unstable;
	st->answers_lost = g->slot.lost;
	st->answers_held = g->slot.held;
	if (g->fp) {
		struct fastpath_stats fs;

		fastpath_get_stats(g->fp, &fs);
		st->fastpath = 1;
		st->fast_queues = fastpath_queues(g->fp);
		st->eventfd_notifies = fs.notifies;
		st->irqfd_irqs = fs.irqs;
	}
	if (!g->gm)
		return;
	gmem_xen_get_stats(g->gm, &ms);
	st->maps = ms.maps;
	st->cache_hits = ms.cache_hits;
	st->bucket_maps = ms.bucket_maps;
	st->evictions = ms.evictions;
	st->temp_maps = ms.temp_maps;
	st->grant_maps = ms.grant_maps;
	st->map_failures = ms.failures;
	st->buckets = ms.buckets;
	st->max_buckets = ms.max_buckets;
	st->premapped = ms.premapped;
}

void xen_guest_notify_status(struct xen_guest *g, char *buf, unsigned len)
{
	struct xen_guest_stats s;

	xen_guest_get_stats(g, &s);
	if (s.fastpath)
		snprintf(buf, len, "notify path privcmd ioeventfd+irqfd: %llu notifies via eventfd, "
			 "%llu irqs via irqfd", (unsigned long long)s.eventfd_notifies,
			 (unsigned long long)s.irqfd_irqs);
	else
		snprintf(buf, len, "notify path ioreq (%s)", g->fp_why);
}

void xen_guest_dump(struct xen_guest *g)
{
	struct xen_guest_stats s;

	xen_guest_get_stats(g, &s);
	xg_log_notify_path(g);
	log_notice("xen: %s: stats vcpus=%u ioreqs=%llu bad_ioreqs=%llu invalidates=%llu "
		   "spurious=%llu irqs=%llu irq_errors=%llu fastpath=%u fast_queues=%u "
		   "eventfd_notifies=%llu irqfd_irqs=%llu left_to_kernel=%llu kernel_waits=%llu "
		   "kernel_busy=%llu slot_unstable=%llu answers_lost=%llu answers_held=%llu "
		   "maps=%llu "
		   "cache_hits=%llu "
		   "bucket_maps=%llu evictions=%llu temp_maps=%llu grant_maps=%llu "
		   "map_failures=%llu buckets=%u/%u premapped_mib=%llu",
		   g->name, s.nr_vcpus, (unsigned long long)s.ioreqs,
		   (unsigned long long)s.bad_ioreqs, (unsigned long long)s.invalidates,
		   (unsigned long long)s.spurious, (unsigned long long)s.irqs,
		   (unsigned long long)s.irq_errors, s.fastpath, s.fast_queues,
		   (unsigned long long)s.eventfd_notifies, (unsigned long long)s.irqfd_irqs,
		   (unsigned long long)s.left_to_kernel, (unsigned long long)s.kernel_waits,
		   (unsigned long long)s.kernel_busy, (unsigned long long)s.slot_unstable,
		   (unsigned long long)s.answers_lost, (unsigned long long)s.answers_held,
		   (unsigned long long)s.maps,
		   (unsigned long long)s.cache_hits, (unsigned long long)s.bucket_maps,
		   (unsigned long long)s.evictions, (unsigned long long)s.temp_maps,
		   (unsigned long long)s.grant_maps, (unsigned long long)s.map_failures,
		   s.buckets, s.max_buckets, (unsigned long long)(s.premapped >> 20));
}
