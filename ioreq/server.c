/*
 * One guest's ioreq server: the Xen objects of DESIGN.md §3, the dispatch of the guest's
 * register accesses to the virtio-mmio transport, and SPI injection.
 *
 * Setup order (each stage undone in exact reverse by xen_guest_close()):
 *   open:  devicemodel, foreignmemory, evtchn, gnttab handles -> guest memory -> create the
 *          ioreq server -> map its ioreq frames -> enable it -> bind one port per vCPU
 *   add:   route each device window to the server
 *   start: restrict the handles -> assign the notify fast path (ioreq/fastpath.h) -> serve the
 *          event channel fd -> watch for the domain's death
 * The server is enabled before binding because Xen publishes each vCPU's vp_eport in the
 * ioreq page when the server is enabled; with no range routed yet, no ioreq can reach it early.
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
#include "ioreq/xen_priv.h"
#include "ioreq/xen_stats.h"
#include "lib/log.h"
#include "lib/platform.h"
#include "lib/util.h"

#define XG_PAGE_SIZE      4096u
#define XG_SLOTS_PER_PAGE (XG_PAGE_SIZE / sizeof(ioreq_t))
#define XG_MAX_VCPUS      4096u      /* sanity bound on what nr_vcpus may claim */
#define XG_MAX_WINDOWS    64u
#define XG_MMIO_SPACE     1u         /* XEN_DMOP_IO_RANGE_MEMORY */

_Static_assert(sizeof(ioreq_t) == 32, "ioreq_t layout");
_Static_assert(sizeof(evtchn_port_t) == sizeof(uint32_t), "ports handed to privcmd as u32");

struct xen_window {
	struct xen_guest *g;
	unsigned index;               /* in g->win[], and in the fast path's windows */
	char name[80];
	uint64_t base;
	uint32_t irq;
	unsigned nqueues;
	const struct xen_window_ops *ops;
	void *opaque;
	bool mapped;
};

struct xg_port {
	evtchn_port_t port;   /* local port */
	uint32_t vcpu;
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
	ioservid_t id;
	bool created;
	xenforeignmemory_resource_handle *res;
	ioreq_t *slots;               /* nr_vcpus entries in the mapped ioreq frames */
	unsigned nr_frames;
	evtchn_port_t *vcpu_port;     /* local port of each vCPU (nr_bound valid) */
	unsigned nr_bound;
	struct xg_port *ports;        /* the same, sorted by port, for dispatch */

	struct xen_window win[XG_MAX_WINDOWS];
	unsigned nwin;

	struct fastpath *fp;          /* NULL: every access comes through the ioreq server */
	char fp_why[160];             /* why not, for the log line and STATUS */

	ev_io evtchn_w;
	bool serving;
	bool dead;                    /* the domain is gone: Xen tore its side down with it */
	struct xen_death_watch *death;
	void (*on_death)(void *opaque);
	void *death_opaque;

	struct ratelimit rl;
	struct xen_guest_stats st;
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

/* Handle a private copy of a request; returns the data to answer a read with. */
static uint64_t xg_serve_req(struct xen_guest *g, const ioreq_t *r)
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
	w->ops->write(w->opaque, off, r->size, r->data & mask);
	return 0;
}

/*
 * With the fast path the kernel's ioeventfd handler shares our port's event: a kick it will
 * claim may still look READY to us, and answering it would complete it twice. A kick it
 * claimed while we copied may have been followed by the vCPU's next request, so the copy may
 * mix two: then the slot no longer equals it and we leave it too. Either way the port is
 * still masked, so whatever is READY now comes back to us after the unmask.
 */
static bool xg_leave_to_kernel(struct xen_guest *g, volatile ioreq_t *slot, const ioreq_t *req)
{
	ioreq_t again;

	if (fastpath_kernel_claims(g->fp, req))
		return true;
	/* Read the slot again only after the first copy. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	memcpy(&again, (const void *)slot, sizeof(again));
	if (memcmp(&again, req, sizeof(again)) == 0)
		return false;
	g->st.spurious++;
	return true;
}

static void xg_serve_vcpu(struct xen_guest *g, unsigned vcpu)
{
	volatile ioreq_t *slot = &g->slots[vcpu];
	ioreq_t req;
	uint64_t data;

	if (slot->state != STATE_IOREQ_READY) {
		g->st.spurious++;
		return;
	}
	/* Read barrier: Xen wrote the request before setting READY; read it only after. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	/* One copy: the guest's vCPU is stalled but the page stays shared; validate the copy. */
	memcpy(&req, (const void *)slot, sizeof(req));
	if (g->fp && xg_leave_to_kernel(g, slot, &req))
		return;
	data = xg_serve_req(g, &req);
	if (req.dir == IOREQ_READ)
		slot->data = data;
	/* Write barrier: Xen must see the answer before it sees IORESP_READY. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	slot->state = STATE_IORESP_READY;
	if (xenevtchn_notify(g->xce, g->vcpu_port[vcpu]) < 0)
		log_rl(&g->rl, LOG_WARNING, "xen: %s: notify vCPU %u: %s", g->name, vcpu,
		       strerror(errno));
}

static int xg_port_cmp(const void *a, const void *b)
{
	const struct xg_port *x = a, *y = b;

	return x->port < y->port ? -1 : x->port > y->port;
}

static int xg_port_vcpu(const struct xen_guest *g, evtchn_port_t port)
{
	struct xg_port key = { .port = port };
	const struct xg_port *p = g->nr_bound ? bsearch(&key, g->ports, g->nr_bound, sizeof(key),
							xg_port_cmp) : NULL;

	return p ? (int)p->vcpu : -1;
}

static void xg_evtchn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct xen_guest *g = container_of(w, struct xen_guest, evtchn_w);
	xenevtchn_port_or_error_t port;

	(void)loop;
	(void)revents;
	/* The fd is non-blocking: drain every pending port, then let the loop wait again. */
	while ((port = xenevtchn_pending(g->xce)) >= 0) {
		int vcpu = xg_port_vcpu(g, (evtchn_port_t)port);

		if (vcpu >= 0)
			xg_serve_vcpu(g, (unsigned)vcpu);
		else
			log_rl(&g->rl, LOG_WARNING, "xen: %s: event on unknown port %d", g->name,
			       port);
		if (xenevtchn_unmask(g->xce, (evtchn_port_t)port) < 0)
			log_rl(&g->rl, LOG_WARNING, "xen: %s: unmask port %d: %s", g->name, port,
			       strerror(errno));
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

/* ---- stage 1: open ---- */

/* Opened with the other handles (before capabilities go); its absence only costs speed. */
static void xg_open_privcmd(struct xen_guest *g)
{
	int rc;

	if (g->opts.fastpath == XEN_FASTPATH_OFF) {
		snprintf(g->fp_why, sizeof(g->fp_why), "notify_fastpath = off");
		return;
	}
	rc = xen_privcmd_open(g->opts.domid, &g->pc);
	if (rc < 0)
		snprintf(g->fp_why, sizeof(g->fp_why), "opening /dev/xen/privcmd: %s",
			 strerror(-rc));
}

static int xg_open_handles(struct xen_guest *g)
{
	g->dm = xendevicemodel_open(NULL, 0);
	if (!g->dm)
		return -errno ? -errno : -EIO;
	g->fm = xenforeignmemory_open(NULL, 0);
	if (!g->fm)
		return -errno ? -errno : -EIO;
	g->xce = xenevtchn_open(NULL, 0);
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

static int xg_create_server(struct xen_guest *g)
{
	void *addr = NULL;

	/* Arm has no buffered ioreqs: every access is synchronous. */
	if (xendevicemodel_create_ioreq_server(g->dm, (domid_t)g->opts.domid,
					       HVM_IOREQSRV_BUFIOREQ_OFF, &g->id) < 0)
		return -errno;
	g->created = true;
	g->res = xenforeignmemory_map_resource(g->fm, (domid_t)g->opts.domid,
					       XENMEM_resource_ioreq_server, g->id,
					       XENMEM_resource_ioreq_server_frame_ioreq(0),
					       g->nr_frames, &addr, PROT_READ | PROT_WRITE, 0);
	if (!g->res)
		return -errno;
	g->slots = addr;
	if (xendevicemodel_set_ioreq_server_state(g->dm, (domid_t)g->opts.domid, g->id, 1) < 0)
		return -errno;
	return 0;
}

static int xg_bind_ports(struct xen_guest *g)
{
	g->vcpu_port = calloc(g->nr_vcpus, sizeof(*g->vcpu_port));
	g->ports = calloc(g->nr_vcpus, sizeof(*g->ports));
	if (!g->vcpu_port || !g->ports)
		return -ENOMEM;
	for (unsigned i = 0; i < g->nr_vcpus; i++) {
		/* Read once: the page is shared with Xen. */
		uint32_t remote = ((volatile ioreq_t *)&g->slots[i])->vp_eport;
		xenevtchn_port_or_error_t p = xenevtchn_bind_interdomain(g->xce, g->opts.domid,
									 remote);

		if (p < 0) {
			log_err("xen: %s: binding vCPU %u port %u: %s", g->name, i, remote,
				strerror(errno));
			return -errno ? -errno : -EIO;
		}
		g->vcpu_port[i] = (evtchn_port_t)p;
		g->ports[i] = (struct xg_port){ .port = (evtchn_port_t)p, .vcpu = i };
		g->nr_bound = i + 1;
	}
	qsort(g->ports, g->nr_bound, sizeof(g->ports[0]), xg_port_cmp);
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
	g->gm = gmem_xen_create(g->fm, g->gt, g->opts.domid, g->opts.map_cache_mib,
				g->opts.premap);
	if (!g->gm)
		return -ENOMEM;
	if ((rc = xg_create_server(g)) < 0) {
		log_err("xen: %s: setting up the ioreq server (%u vCPUs, %u frames): %s",
			g->name, g->nr_vcpus, g->nr_frames, strerror(-rc));
		return rc;
	}
	if ((rc = xg_bind_ports(g)) < 0)
		return rc;
	if ((rc = xg_fd_nonblock(g)) < 0) {
		log_err("xen: %s: event channel fd: %s", g->name, strerror(-rc));
		return rc;
	}
	return 0;
}

int xen_guest_open(struct ev_loop *loop, const struct xen_opts *opts, struct xen_guest **out)
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
	if (xen_domain_name(opts->domid, g->name, sizeof(g->name)) < 0)
		snprintf(g->name, sizeof(g->name), "domain %u", opts->domid);
	rc = xg_open_stages(g);
	if (rc < 0) {
		xen_guest_close(g);
		return rc;
	}
	g->st.nr_vcpus = g->nr_vcpus;
	g->st.nr_frames = g->nr_frames;
	log_info("xen: %s: ioreq server %u, %u vCPUs, %u ioreq frames", g->name, g->id,
		 g->nr_vcpus, g->nr_frames);
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

	*out = NULL;
	if (g->nwin >= XG_MAX_WINDOWS || base > UINT64_MAX - PLATFORM_MMIO_WINDOW ||
	    xg_window_overlaps(g, base) || d->irq < 32) {
		log_err("xen: %s: %s: bad or overlapping window 0x%llx irq %u", g->name, d->name,
			(unsigned long long)base, d->irq);
		return -EINVAL;
	}
	if (xendevicemodel_map_io_range_to_ioreq_server(g->dm, (domid_t)g->opts.domid, g->id,
							XG_MMIO_SPACE, base,
							base + PLATFORM_MMIO_WINDOW - 1) < 0) {
		int err = errno;

		log_err("xen: %s: %s: routing 0x%llx: %s", g->name, d->name,
			(unsigned long long)base, strerror(err));
		return -err;
	}
	w = &g->win[g->nwin];
	*w = (struct xen_window){ .g = g, .index = g->nwin, .base = base, .irq = d->irq,
				  .nqueues = d->nqueues, .ops = d->ops, .opaque = d->opaque,
				  .mapped = true };
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

/* Try the fast path; on any failure everything stays on the ioreq path, with fp_why set. */
static void xg_fastpath_start(struct xen_guest *g)
{
	struct fastpath_params p = {
		.loop = g->loop, .pc = g->pc, .domid = g->opts.domid, .name = g->name,
		.ioreq_page = g->slots, .ports = g->vcpu_port, .nr_vcpus = g->nr_vcpus,
	};
	struct fastpath_window wins[XG_MAX_WINDOWS];
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
	for (unsigned i = 0; i < g->nwin; i++) {
		const struct xen_window *w = &g->win[i];

		wins[i] = (struct fastpath_window){ .name = w->name, .base = w->base, .irq = w->irq,
						    .nqueues = w->nqueues, .ops = w->ops,
						    .opaque = w->opaque };
	}
	rc = fastpath_start(&p, wins, g->nwin, &g->fp);
	if (rc < 0)
		xg_fastpath_why(g, rc);
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
		log_notice("xen: %s: notify path: privcmd ioeventfd+irqfd (%u queues)", g->name,
			   fastpath_queues(g->fp));
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
	return 0;
}

/* ---- teardown ---- */

/*
 * A teardown call that failed. Once the domain is gone, Xen has already destroyed its ioreq
 * servers (calls then fail with ENOENT or ESRCH): undoing them is moot, not worth a warning.
 */
static void xg_log_teardown(const struct xen_guest *g, const char *what, int err)
{
	if (g->dead)
		log_debug("xen: %s (domain gone): %s", what, strerror(err));
	else
		xg_log_call(what, err);
}

static void xg_unmap_windows(struct xen_guest *g)
{
	for (unsigned i = g->nwin; i-- > 0;) {
		struct xen_window *w = &g->win[i];

		if (w->mapped &&
		    xendevicemodel_unmap_io_range_from_ioreq_server(
			    g->dm, (domid_t)g->opts.domid, g->id, XG_MMIO_SPACE, w->base,
			    w->base + PLATFORM_MMIO_WINDOW - 1) < 0)
			xg_log_teardown(g, "unmapping an mmio window", errno);
		w->mapped = false;
	}
	g->nwin = 0;
}

static void xg_unbind_ports(struct xen_guest *g)
{
	for (unsigned i = g->nr_bound; i-- > 0;)
		if (xenevtchn_unbind(g->xce, g->vcpu_port[i]) < 0)
			xg_log_teardown(g, "unbinding a vCPU port", errno);
	g->nr_bound = 0;
	free(g->ports);
	free(g->vcpu_port);
	g->ports = NULL;
	g->vcpu_port = NULL;
}

static void xg_destroy_server(struct xen_guest *g)
{
	if (g->res && xenforeignmemory_unmap_resource(g->fm, g->res) < 0)
		xg_log_teardown(g, "unmapping the ioreq frames", errno);
	g->res = NULL;
	g->slots = NULL;
	if (g->created &&
	    xendevicemodel_destroy_ioreq_server(g->dm, (domid_t)g->opts.domid, g->id) < 0)
		xg_log_teardown(g, "destroying the ioreq server", errno);
	g->created = false;
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

void xen_guest_close(struct xen_guest *g)
{
	if (!g)
		return;
	xen_death_watch_stop(g->death);
	g->death = NULL;
	if (g->serving)
		ev_io_stop(g->loop, &g->evtchn_w);
	g->serving = false;
	/* Before the ports and the ioreq page the kernel's handlers use go. */
	fastpath_stop(g->fp, g->dead);
	g->fp = NULL;
	xg_unmap_windows(g);
	xg_unbind_ports(g);
	xg_destroy_server(g);
	gmem_destroy(g->gm);
	g->gm = NULL;
	xg_close_handles(g);
	free(g);
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
	if (g->fp) {
		struct fastpath_stats fs;

		fastpath_get_stats(g->fp, &fs);
		st->fastpath = 1;
		st->fast_queues = fastpath_queues(g->fp);
		st->eventfd_notifies = fs.notifies;
		st->irqfd_irqs = fs.irqs;
		st->left_to_kernel = fs.left_to_kernel;
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
		   "eventfd_notifies=%llu irqfd_irqs=%llu left_to_kernel=%llu maps=%llu "
		   "cache_hits=%llu "
		   "bucket_maps=%llu evictions=%llu temp_maps=%llu grant_maps=%llu "
		   "map_failures=%llu buckets=%u/%u premapped_mib=%llu",
		   g->name, s.nr_vcpus, (unsigned long long)s.ioreqs,
		   (unsigned long long)s.bad_ioreqs, (unsigned long long)s.invalidates,
		   (unsigned long long)s.spurious, (unsigned long long)s.irqs,
		   (unsigned long long)s.irq_errors, s.fastpath, s.fast_queues,
		   (unsigned long long)s.eventfd_notifies, (unsigned long long)s.irqfd_irqs,
		   (unsigned long long)s.left_to_kernel, (unsigned long long)s.maps,
		   (unsigned long long)s.cache_hits, (unsigned long long)s.bucket_maps,
		   (unsigned long long)s.evictions, (unsigned long long)s.temp_maps,
		   (unsigned long long)s.grant_maps, (unsigned long long)s.map_failures,
		   s.buckets, s.max_buckets, (unsigned long long)(s.premapped >> 20));
}
