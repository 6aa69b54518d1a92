/*
 * xensim self-tests: the drop-in Xen functions called exactly as a device model calls them,
 * against a hub playing Xen and the guest. The ioreq round trip runs the device model in a
 * forked child, as the daemon would be a separate process.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <xendevicemodel.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xengnttab.h>
#include <xenstore.h>
#include <xen/memory.h>

#include "ioreq/gmem.h"
#include "tests/xensim/guest.h"

#define WIN_BASE UINT64_C(0x02000000)
#define WIN_END  (WIN_BASE + 0x1ff)

struct fx {
	struct xsim_hub *hub;
	struct xsim_dom *dom;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct xsim_dom_opts o = { .name = "g1", .nr_vcpus = 200, .ram_mib = 16, .ram1_mib = 4 };

	if (!f)
		return -1;
	f->hub = xsim_hub_start();
	f->dom = f->hub ? xsim_dom_create(f->hub, &o) : NULL;
	*state = f;
	return f->dom ? 0 : -1;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	xsim_hub_stop(f->hub);
	free(f);
	return 0;
}

/* ---- xenstore ---- */

static void test_xs_read_write_directory(void **state)
{
	struct fx *f = *state;
	struct xs_handle *xs = xs_open(0);
	unsigned len, n;
	char *v, **dir;

	assert_non_null(xs);
	v = xs_read(xs, XBT_NULL, "/local/domain/1/name", &len);
	assert_non_null(v);
	assert_int_equal(len, 2);
	assert_string_equal(v, "g1");
	free(v);
	assert_true(xs_write(xs, XBT_NULL, "/local/domain/0/backend/virtio/1/0/irq", "33", 2));
	v = xsim_xs_read(f->hub, "/local/domain/0/backend/virtio/1/0/irq");
	assert_non_null(v);
	assert_string_equal(v, "33");
	free(v);
	assert_int_equal(xsim_xs_write(f->hub, "/local/domain/0/backend/virtio/1/1/irq", "34"), 0);
	dir = xs_directory(xs, XBT_NULL, "/local/domain/0/backend/virtio/1", &n);
	assert_non_null(dir);
	assert_int_equal(n, 2);
	assert_true((!strcmp(dir[0], "0") && !strcmp(dir[1], "1")) ||
		    (!strcmp(dir[0], "1") && !strcmp(dir[1], "0")));
	free(dir);
	assert_true(xs_rm(xs, XBT_NULL, "/local/domain/0/backend/virtio/1"));
	assert_null(xs_read(xs, XBT_NULL, "/local/domain/0/backend/virtio/1/0/irq", &len));
	assert_int_equal(errno, ENOENT);
	assert_false(xs_rm(xs, XBT_NULL, "/nonexistent"));
	v = xs_get_domain_path(xs, 7);
	assert_string_equal(v, "/local/domain/7");
	free(v);
	xs_close(xs);
}

static char **next_event(struct xs_handle *xs, int timeout_ms)
{
	struct pollfd p = { .fd = xs_fileno(xs), .events = POLLIN };

	if (poll(&p, 1, timeout_ms) <= 0)
		return NULL;
	return xs_check_watch(xs);
}

static void expect_event(struct xs_handle *xs, const char *path, const char *token)
{
	char **ev = next_event(xs, 2000);

	assert_non_null(ev);
	assert_string_equal(ev[XS_WATCH_PATH], path);
	assert_string_equal(ev[XS_WATCH_TOKEN], token);
	free(ev);
}

static void test_xs_watch(void **state)
{
	struct fx *f = *state;
	struct xs_handle *xs = xs_open(0);

	assert_non_null(xs);
	assert_true(xs_watch(xs, "/local/domain/0/backend", "be"));
	/* Fires once at registration, as xenstored does. */
	expect_event(xs, "/local/domain/0/backend", "be");
	assert_null(xs_check_watch(xs));
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(xsim_xs_write(f->hub, "/local/domain/0/backend/virtio/1/0/type", "x"), 0);
	expect_event(xs, "/local/domain/0/backend/virtio/1/0/type", "be");
	assert_int_equal(xsim_xs_write(f->hub, "/local/domain/1/other", "y"), 0);
	assert_null(next_event(xs, 50));   /* not under the watched path */
	/* Removing a parent fires the watch with the watched path. */
	assert_true(xs_watch(xs, "/local/domain/0/backend/virtio/1/0/type", "leaf"));
	expect_event(xs, "/local/domain/0/backend/virtio/1/0/type", "leaf");
	assert_int_equal(xsim_xs_rm(f->hub, "/local/domain/0/backend/virtio"), 0);
	for (int i = 0; i < 2; i++) {
		char **ev = next_event(xs, 2000);

		assert_non_null(ev);
		assert_true(!strcmp(ev[XS_WATCH_TOKEN], "be") ||
			    !strcmp(ev[XS_WATCH_TOKEN], "leaf"));
		free(ev);
	}
	assert_true(xs_unwatch(xs, "/local/domain/0/backend", "be"));
	assert_false(xs_unwatch(xs, "/local/domain/0/backend", "be"));
	assert_int_equal(xsim_xs_write(f->hub, "/local/domain/0/backend/x", "1"), 0);
	assert_null(next_event(xs, 50));
	xs_close(xs);
}

/* A client that does not read for a while loses no event, and gets them in order. */
static void test_xs_watch_no_loss(void **state)
{
	struct fx *f = *state;
	struct xs_handle *xs = xs_open(0);
	enum { N = 5000 };
	char path[64];
	unsigned got = 0;

	assert_non_null(xs);
	assert_true(xs_watch(xs, "/flood", "f"));
	expect_event(xs, "/flood", "f");
	for (unsigned i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "/flood/%u", i);
		assert_int_equal(xsim_xs_write(f->hub, path, "%u", i), 0);
	}
	while (got < N) {
		char **ev = next_event(xs, 2000);

		assert_non_null(ev);
		snprintf(path, sizeof(path), "/flood/%u", got);
		assert_string_equal(ev[XS_WATCH_PATH], path);
		free(ev);
		got++;
	}
	assert_null(next_event(xs, 20));
	xs_close(xs);
}

/*
 * xenstored restarted: connections dropped, contents kept. A lost handle behaves as the real
 * threaded libxenstore's: queued events still come, then xs_check_watch fails with EINVAL;
 * requests fail (EBADF once the loss is known); xs_fileno() does not become readable.
 */
static void test_xs_restart(void **state)
{
	struct fx *f = *state;
	struct xs_handle *xs = xs_open(0), *xs2;
	struct pollfd p;
	unsigned len;
	char *v, **ev;

	assert_non_null(xs);
	assert_int_equal(xsim_xs_write(f->hub, "/r/a", "1"), 0);
	assert_true(xs_watch(xs, "/r", "t"));
	expect_event(xs, "/r", "t");
	assert_int_equal(xsim_xs_watch_count(f->hub, "/r"), 1);
	assert_int_equal(xsim_xs_write(f->hub, "/r/b", "2"), 0);   /* sent before the restart */
	assert_int_equal(xsim_xs_restart(f->hub, false), 0);
	assert_int_equal(xsim_xs_watch_count(f->hub, "/r"), 0);
	ev = xs_check_watch(xs);
	assert_non_null(ev);
	assert_string_equal(ev[XS_WATCH_PATH], "/r/b");
	free(ev);
	assert_null(xs_check_watch(xs));
	assert_int_equal(errno, EINVAL);
	p = (struct pollfd){ .fd = xs_fileno(xs), .events = POLLIN };
	assert_int_equal(poll(&p, 1, 100), 0);
	assert_null(xs_read_watch(xs, &len));   /* does not block */
	assert_int_equal(errno, EINVAL);
	assert_null(xs_read(xs, XBT_NULL, "/r/a", &len));
	assert_int_equal(errno, EBADF);
	assert_false(xs_write(xs, XBT_NULL, "/r/c", "3", 1));
	assert_null(xs_get_domain_path(xs, 0));
	assert_false(xs_is_domain_introduced(xs, 0));
	xs_close(xs);
	/* A new connection works at once and sees the old contents; its watch fires once. */
	xs2 = xs_open(0);
	assert_non_null(xs2);
	v = xs_read(xs2, XBT_NULL, "/r/a", &len);
	assert_non_null(v);
	assert_string_equal(v, "1");
	free(v);
	assert_true(xs_watch(xs2, "/r", "t2"));
	expect_event(xs2, "/r", "t2");
	/* Down for a while: new connections are refused until it is up again. */
	assert_int_equal(xsim_xs_restart(f->hub, true), 0);
	errno = 0;
	assert_null(xs_open(0));
	assert_int_equal(errno, ECONNREFUSED);
	assert_false(xs_watch(xs2, "/r", "t3"));
	xs_close(xs2);
	xsim_xs_up(f->hub);
	xs2 = xs_open(0);
	assert_non_null(xs2);
	assert_true(xs_is_domain_introduced(xs2, 0));
	xs_close(xs2);
}

static void test_xs_release_domain(void **state)
{
	struct fx *f = *state;
	struct xs_handle *xs = xs_open(0);
	uint32_t id = xsim_dom_id(f->dom);
	unsigned len;

	assert_non_null(xs);
	assert_true(xs_watch(xs, "@releaseDomain", "rel"));
	expect_event(xs, "@releaseDomain", "rel");
	assert_true(xs_is_domain_introduced(xs, id));
	assert_true(xs_is_domain_introduced(xs, 0));
	assert_false(xs_is_domain_introduced(xs, 999));
	assert_int_equal(xsim_dom_destroy(f->dom), 0);
	expect_event(xs, "@releaseDomain", "rel");
	assert_false(xs_is_domain_introduced(xs, id));
	assert_null(xs_read(xs, XBT_NULL, "/local/domain/1/name", &len));
	assert_int_equal(xsim_dom_destroy(f->dom), -ESRCH);
	xs_close(xs);
}

/* ---- foreign memory and grants ---- */

static void test_fmem_map(void **state)
{
	struct fx *f = *state;
	xenforeignmemory_handle *fm = xenforeignmemory_open(NULL, 0);
	xen_pfn_t pfns[3] = { 0x40010, 0x40011, 0x1000 /* a hole */ };
	int err[3];
	uint8_t *p, *g;

	assert_non_null(fm);
	p = xenforeignmemory_map(fm, 1, PROT_READ | PROT_WRITE, 3, pfns, err);
	assert_non_null(p);
	assert_int_equal(err[0], 0);
	assert_int_equal(err[1], 0);
	assert_int_equal(err[2], -EINVAL);
	g = xsim_dom_ram(f->dom, 0x40010000, 8192);
	assert_non_null(g);
	p[5] = 0xa5;
	p[4096 + 7] = 0x5a;
	assert_int_equal(g[5], 0xa5);
	assert_int_equal(g[4096 + 7], 0x5a);
	assert_int_equal(xenforeignmemory_unmap(fm, p, 3), 0);
	/* Without an err array one bad frame fails the whole call. */
	assert_null(xenforeignmemory_map(fm, 1, PROT_READ, 3, pfns, NULL));
	assert_int_equal(errno, EINVAL);
	/* Bank 1 and the end of bank 0 (16 MiB). */
	pfns[0] = 0x200000;
	pfns[1] = 0x40fff;
	p = xenforeignmemory_map(fm, 1, PROT_READ, 2, pfns, NULL);
	assert_non_null(p);
	xenforeignmemory_unmap(fm, p, 2);
	pfns[0] = 0x41000;   /* just past bank 0 */
	assert_null(xenforeignmemory_map(fm, 1, PROT_READ, 1, pfns, NULL));
	assert_null(xenforeignmemory_map(fm, 42, PROT_READ, 1, pfns, NULL));
	/* Restricted to domain 1: domain 2 is out of reach. */
	assert_int_equal(xenforeignmemory_restrict(fm, 1), 0);
	assert_null(xenforeignmemory_map(fm, 2, PROT_READ, 1, pfns, NULL));
	assert_int_equal(errno, EPERM);
	/* A dead domain cannot be mapped. */
	assert_int_equal(xsim_dom_destroy(f->dom), 0);
	pfns[0] = 0x40000;
	assert_null(xenforeignmemory_map(fm, 1, PROT_READ, 1, pfns, NULL));
	assert_int_equal(errno, ESRCH);
	xenforeignmemory_close(fm);
}

/* O_DIRECT read of one page from a file of ours into domain d's first page, mapped as a DM does. */
static ssize_t direct_read_into(struct xsim_hub *h, struct xsim_dom *d)
{
	xenforeignmemory_handle *fm = xenforeignmemory_open(NULL, 0);
	xen_pfn_t pfn = 0x40000;
	char path[256];
	ssize_t r;
	void *p;
	int fd;

	assert_non_null(fm);
	p = xenforeignmemory_map(fm, xsim_dom_id(d), PROT_READ | PROT_WRITE, 1, &pfn, NULL);
	assert_non_null(p);
	snprintf(path, sizeof(path), "%s/direct.img", xsim_hub_dir(h));
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	memset(p, 0x5a, 4096);
	assert_int_equal(pwrite(fd, p, 4096, 0), 4096);   /* real blocks, not a hole */
	assert_int_equal(fdatasync(fd), 0);
	close(fd);
	fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	assert_true(fd >= 0);
	r = pread(fd, p, 4096, 0);
	if (r < 0)
		r = -errno;
	close(fd);
	unlink(path);
	xenforeignmemory_unmap(fm, p, 1);
	xenforeignmemory_close(fm);
	return r;
}

/*
 * Guest RAM behaves as Xen's foreign mappings do for the kernel: it cannot be pinned, so an
 * O_DIRECT read into it fails with EFAULT; a domain asking for pinnable RAM gets the old memfd.
 */
static void test_ram_unpinnable(void **state)
{
	struct fx *f = *state;
	struct xsim_dom *d2 = xsim_dom_create(f->hub, &(struct xsim_dom_opts){
					       .name = "g2", .ram_mib = 4, .pinnable_ram = true });

	assert_non_null(d2);
	assert_string_equal(xsim_dom_ram_kind(d2), "pinnable");
	assert_int_equal(direct_read_into(f->hub, d2), 4096);
	if (strcmp(xsim_dom_ram_kind(f->dom), "unpinnable") != 0)
		skip();     /* a kernel without memfd_secret(2): said on stderr */
	assert_int_equal(direct_read_into(f->hub, f->dom), -EFAULT);
}

static void test_gnttab(void **state)
{
	struct fx *f = *state;
	xengnttab_handle *gt = xengnttab_open(NULL, 0);
	uint64_t ga = xsim_grant_addr(f->dom, 0x40020010, 5000, false);
	uint64_t ro = xsim_grant_addr(f->dom, 0x40030000, 4096, true);
	uint32_t refs[2], bad = 7;
	uint8_t *p, *g = xsim_dom_ram(f->dom, 0x40020000, 8192);

	assert_non_null(gt);
	assert_true(ga & GMEM_GRANT_BIT);
	assert_int_equal(ga & 0xfff, 0x10);
	refs[0] = (uint32_t)((ga & ~GMEM_GRANT_BIT) >> 12);
	refs[1] = refs[0] + 1;   /* the buffer spans consecutive refs */
	p = xengnttab_map_domain_grant_refs(gt, 2, 1, refs, PROT_READ | PROT_WRITE);
	assert_non_null(p);
	p[0x10] = 0x77;
	p[4096 + 1] = 0x66;
	assert_int_equal(g[0x10], 0x77);
	assert_int_equal(g[4096 + 1], 0x66);
	assert_int_equal(xengnttab_unmap(gt, p, 2), 0);
	refs[0] = (uint32_t)((ro & ~GMEM_GRANT_BIT) >> 12);
	assert_null(xengnttab_map_domain_grant_refs(gt, 1, 1, refs, PROT_READ | PROT_WRITE));
	p = xengnttab_map_domain_grant_refs(gt, 1, 1, refs, PROT_READ);
	assert_non_null(p);
	assert_int_equal(xengnttab_unmap(gt, p, 1), 0);
	assert_null(xengnttab_map_domain_grant_refs(gt, 1, 1, &bad, PROT_READ));
	xsim_grant_revoke(f->dom, refs[0]);
	assert_null(xengnttab_map_domain_grant_refs(gt, 1, 1, refs, PROT_READ));
	assert_int_equal(xengnttab_set_max_grants(gt, 1), 0);
	refs[0] = (uint32_t)((ga & ~GMEM_GRANT_BIT) >> 12);
	assert_null(xengnttab_map_domain_grant_refs(gt, 2, 1, refs, PROT_READ));
	xengnttab_close(gt);
}

/* ---- interrupts ---- */

static void test_irq_edges(void **state)
{
	struct fx *f = *state;
	xendevicemodel_handle *dm = xendevicemodel_open(NULL, 0);
	uint32_t seen = 0;

	assert_non_null(dm);
	assert_int_equal(xsim_irq_wait(f->dom, 33, &seen, 20), 0);
	assert_int_equal(xendevicemodel_set_irq_level(dm, 1, 33, 1), 0);
	assert_int_equal(xsim_irq_wait(f->dom, 33, &seen, 1000), 1);
	assert_int_equal(seen, 1);
	assert_true(xsim_irq_level(f->dom, 33));
	/* As on Arm Xen: every level-1 write to an SPI injects, high already or not... */
	assert_int_equal(xendevicemodel_set_irq_level(dm, 1, 33, 1), 0);
	assert_int_equal(xsim_irq_edges(f->dom, 33), 2);
	/* ...and lowering injects nothing. */
	assert_int_equal(xendevicemodel_set_irq_level(dm, 1, 33, 0), 0);
	assert_int_equal(xsim_irq_edges(f->dom, 33), 2);
	assert_false(xsim_irq_level(f->dom, 33));
	assert_int_equal(xendevicemodel_set_irq_level(dm, 1, 33, 1), 0);
	assert_int_equal(xsim_irq_edges(f->dom, 33), 3);
	assert_int_equal(xsim_irq_edges(f->dom, 34), 0);
	assert_int_equal(xendevicemodel_set_irq_level(dm, 1, 10, 1), -1);   /* not an SPI */
	assert_int_equal(errno, EINVAL);
	assert_int_equal(xendevicemodel_restrict(dm, 1), 0);
	assert_int_equal(xendevicemodel_set_irq_level(dm, 2, 33, 1), -1);
	assert_int_equal(errno, EPERM);
	xendevicemodel_close(dm);
}

/* ---- ioreq server: in-process checks of setup and event-channel semantics ---- */

struct dmodel {
	xendevicemodel_handle *dm;
	xenforeignmemory_handle *fm;
	xenevtchn_handle *xce;
	xenforeignmemory_resource_handle *res;
	ioreq_t *slots;
	ioservid_t id;
	unsigned nr_vcpus;
	evtchn_port_t *port;
};

static int dmodel_open(struct dmodel *m, domid_t domid)
{
	void *addr = NULL;
	unsigned frames;

	memset(m, 0, sizeof(*m));
	m->dm = xendevicemodel_open(NULL, 0);
	m->fm = xenforeignmemory_open(NULL, 0);
	m->xce = xenevtchn_open(NULL, 0);
	if (!m->dm || !m->fm || !m->xce)
		return -1;
	if (xendevicemodel_nr_vcpus(m->dm, domid, &m->nr_vcpus) < 0 ||
	    xendevicemodel_create_ioreq_server(m->dm, domid, HVM_IOREQSRV_BUFIOREQ_OFF, &m->id) < 0)
		return -2;
	frames = (m->nr_vcpus + 127) / 128;
	m->res = xenforeignmemory_map_resource(m->fm, domid, XENMEM_resource_ioreq_server, m->id,
					       XENMEM_resource_ioreq_server_frame_ioreq(0), frames,
					       &addr, PROT_READ | PROT_WRITE, 0);
	if (!m->res)
		return -3;
	m->slots = addr;
	if (xendevicemodel_set_ioreq_server_state(m->dm, domid, m->id, 1) < 0)
		return -4;
	m->port = calloc(m->nr_vcpus, sizeof(*m->port));
	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		int p = xenevtchn_bind_interdomain(m->xce, domid, m->slots[i].vp_eport);

		if (p < 0)
			return -5;
		m->port[i] = (evtchn_port_t)p;
	}
	if (xendevicemodel_map_io_range_to_ioreq_server(m->dm, domid, m->id, 1, WIN_BASE,
							WIN_END) < 0)
		return -6;
	return 0;
}

static void dmodel_close(struct dmodel *m)
{
	for (unsigned i = 0; m->port && i < m->nr_vcpus; i++)
		xenevtchn_unbind(m->xce, m->port[i]);
	free(m->port);
	if (m->res)
		xenforeignmemory_unmap_resource(m->fm, m->res);
	xenevtchn_close(m->xce);
	xenforeignmemory_close(m->fm);
	xendevicemodel_close(m->dm);
}

static int vcpu_of(struct dmodel *m, evtchn_port_t port)
{
	for (unsigned i = 0; i < m->nr_vcpus; i++)
		if (m->port[i] == port)
			return (int)i;
	return -1;
}

static void test_ioreq_setup_and_masking(void **state)
{
	struct fx *f = *state;
	struct dmodel m;
	struct ioreq req = { .addr = WIN_BASE + 4, .count = 1, .size = 4,
			     .state = STATE_IOREQ_READY, .type = IOREQ_TYPE_COPY };
	void *addr = NULL;
	struct pollfd p;
	int port;

	assert_int_equal(xsim_dom_routed(f->dom, WIN_BASE), false);
	assert_int_equal(dmodel_open(&m, 1), 0);
	assert_int_equal(m.nr_vcpus, 200);
	assert_true(xsim_dom_routed(f->dom, WIN_BASE + 0x1ff));
	assert_false(xsim_dom_routed(f->dom, WIN_BASE + 0x200));
	assert_int_not_equal(m.slots[199].vp_eport, 0);
	/* Frame 0 (buffered ioreqs) does not exist with BUFIOREQ_OFF; nor does a third frame. */
	assert_null(xenforeignmemory_map_resource(m.fm, 1, XENMEM_resource_ioreq_server, m.id, 0,
						  1, &addr, PROT_READ, 0));
	assert_null(xenforeignmemory_map_resource(m.fm, 1, XENMEM_resource_ioreq_server, m.id, 1,
						  3, &addr, PROT_READ, 0));
	assert_int_equal(xendevicemodel_map_io_range_to_ioreq_server(m.dm, 1, m.id, 1, WIN_BASE,
								     WIN_BASE), -1);
	assert_int_equal(errno, EEXIST);
	/* A request from vCPU 130 shows up on its port and stays masked until unmasked. */
	fcntl(xenevtchn_fd(m.xce), F_SETFL, O_NONBLOCK);
	assert_int_equal(xsim_ioreq_raw(f->dom, 130, WIN_BASE, &req, NULL, 0), 0);
	port = xenevtchn_pending(m.xce);
	assert_int_equal(vcpu_of(&m, (evtchn_port_t)port), 130);
	assert_int_equal(m.slots[130].state, STATE_IOREQ_READY);
	assert_int_equal(m.slots[130].addr, WIN_BASE + 4);
	assert_int_equal(xsim_ioreq_raw(f->dom, 130, WIN_BASE, &req, NULL, 0), 0);
	p = (struct pollfd){ .fd = xenevtchn_fd(m.xce), .events = POLLIN };
	assert_int_equal(poll(&p, 1, 20), 0);
	assert_int_equal(xenevtchn_pending(m.xce), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(xenevtchn_unmask(m.xce, (evtchn_port_t)port), 0);
	assert_int_equal(poll(&p, 1, 1000), 1);
	assert_int_equal(xenevtchn_pending(m.xce), port);
	/* Disabled: nothing routes there any more. Unmapped range: same. */
	assert_int_equal(xendevicemodel_set_ioreq_server_state(m.dm, 1, m.id, 0), 0);
	assert_false(xsim_dom_routed(f->dom, WIN_BASE));
	assert_int_equal(xsim_mmio_write(f->dom, 0, WIN_BASE, 4, 1), -EFAULT);
	assert_int_equal(xendevicemodel_set_ioreq_server_state(m.dm, 1, m.id, 1), 0);
	assert_int_equal(xendevicemodel_unmap_io_range_from_ioreq_server(m.dm, 1, m.id, 1,
									 WIN_BASE, WIN_END), 0);
	assert_false(xsim_dom_routed(f->dom, WIN_BASE));
	assert_int_equal(xendevicemodel_destroy_ioreq_server(m.dm, 1, m.id), 0);
	assert_int_equal(xendevicemodel_destroy_ioreq_server(m.dm, 1, m.id), -1);
	dmodel_close(&m);
}

/* Two servers: an access reaches only the one whose range covers it; INVALIDATE reaches both. */
static void test_two_servers_routing(void **state)
{
	struct fx *f = *state;
	struct dmodel a, b;
	struct ioreq req = { .count = 1, .size = 4, .state = STATE_IOREQ_READY,
			     .type = IOREQ_TYPE_COPY, .dir = IOREQ_READ };

	assert_int_equal(dmodel_open(&a, 1), 0);
	memset(&b, 0, sizeof(b));
	b.dm = xendevicemodel_open(NULL, 0);
	b.fm = xenforeignmemory_open(NULL, 0);
	b.xce = xenevtchn_open(NULL, 0);
	assert_int_equal(xendevicemodel_create_ioreq_server(b.dm, 1, 0, &b.id), 0);
	assert_int_not_equal(b.id, a.id);
	{
		void *addr = NULL;

		b.nr_vcpus = 200;
		b.res = xenforeignmemory_map_resource(b.fm, 1, XENMEM_resource_ioreq_server, b.id,
						      1, 2, &addr, PROT_READ | PROT_WRITE, 0);
		assert_non_null(b.res);
		b.slots = addr;
	}
	/* Not enabled yet: vp_eport is not published and nothing routes to it. */
	assert_int_equal(b.slots[0].vp_eport, 0);
	assert_int_equal(xendevicemodel_map_io_range_to_ioreq_server(b.dm, 1, b.id, 1,
								     WIN_BASE + 0x200,
								     WIN_BASE + 0x3ff), 0);
	assert_false(xsim_dom_routed(f->dom, WIN_BASE + 0x200));
	assert_int_equal(xendevicemodel_set_ioreq_server_state(b.dm, 1, b.id, 1), 0);
	assert_int_not_equal(b.slots[0].vp_eport, 0);
	assert_int_not_equal(b.slots[0].vp_eport, a.slots[0].vp_eport);
	req.addr = WIN_BASE + 0x204;
	assert_int_equal(xsim_ioreq_raw(f->dom, 3, req.addr, &req, NULL, 0), 0);
	assert_int_equal(b.slots[3].state, STATE_IOREQ_READY);
	assert_int_equal(a.slots[3].state, STATE_IOREQ_NONE);
	req.addr = WIN_BASE + 0x4;
	assert_int_equal(xsim_ioreq_raw(f->dom, 4, req.addr, &req, NULL, 0), 0);
	assert_int_equal(a.slots[4].state, STATE_IOREQ_READY);
	assert_int_equal(b.slots[4].state, STATE_IOREQ_NONE);
	/* An evtchn handle restricted to domain 1 cannot bind another domain's port. */
	assert_int_equal(xenevtchn_restrict(b.xce, 1), 0);
	assert_int_equal(xenevtchn_bind_interdomain(b.xce, 2, b.slots[0].vp_eport), -1);
	assert_int_equal(errno, EPERM);
	/* Binding a port that is no vCPU's fails like an unbound remote port. */
	assert_int_equal(xenevtchn_bind_interdomain(b.xce, 1, 9999), -1);
	assert_int_equal(errno, EINVAL);
	b.nr_vcpus = 0;
	dmodel_close(&b);
	dmodel_close(&a);
}

/* Released Xen has one ioreq frame per server: 128 vCPU slots, frame_ioreq(1) is EINVAL. */
static void test_one_ioreq_frame(void **state)
{
	struct fx *f = *state;
	struct xsim_dom_opts o = { .name = "old", .nr_vcpus = 200, .ioreq_pages_max = 1 };
	struct xsim_dom *d = xsim_dom_create(f->hub, &o);
	xendevicemodel_handle *dm = xendevicemodel_open(NULL, 0);
	xenforeignmemory_handle *fm = xenforeignmemory_open(NULL, 0);
	xenforeignmemory_resource_handle *res;
	uint32_t id = xsim_dom_id(d);
	ioservid_t sid;
	void *addr = NULL;
	ioreq_t *slots;
	uint64_t v;

	assert_non_null(d);
	assert_int_equal(xendevicemodel_create_ioreq_server(dm, id, 0, &sid), 0);
	assert_null(xenforeignmemory_map_resource(fm, id, XENMEM_resource_ioreq_server, sid, 1, 2,
						  &addr, PROT_READ | PROT_WRITE, 0));
	assert_int_equal(errno, EINVAL);
	assert_null(xenforeignmemory_map_resource(fm, id, XENMEM_resource_ioreq_server, sid, 2, 1,
						  &addr, PROT_READ | PROT_WRITE, 0));
	res = xenforeignmemory_map_resource(fm, id, XENMEM_resource_ioreq_server, sid, 1, 1, &addr,
					    PROT_READ | PROT_WRITE, 0);
	assert_non_null(res);
	slots = addr;
	assert_int_equal(xendevicemodel_map_io_range_to_ioreq_server(dm, id, sid, 1, WIN_BASE,
								     WIN_END), 0);
	assert_int_equal(xendevicemodel_set_ioreq_server_state(dm, id, sid, 1), 0);
	assert_int_not_equal(slots[127].vp_eport, 0);
	assert_int_equal(xsim_mmio(d, 150, WIN_BASE, 4, false, &v, 10), -ENXIO);
	assert_int_equal(xsim_mmio(d, 127, WIN_BASE, 4, false, &v, 10), -ETIMEDOUT);
	xenforeignmemory_unmap_resource(fm, res);
	xenforeignmemory_close(fm);
	xendevicemodel_close(dm);
}

/* ---- event channels: the /dev/xen/evtchn model (one fd per handle) ---- */

/* Fire vCPU v's port as Xen does for a request (the slot is filled, nobody waits). */
static void fire(struct xsim_dom *d, unsigned v)
{
	struct ioreq req = { .addr = WIN_BASE, .count = 1, .size = 4,
			     .state = STATE_IOREQ_READY, .type = IOREQ_TYPE_COPY };

	assert_int_equal(xsim_ioreq_raw(d, v, WIN_BASE, &req, NULL, 0), 0);
}

static int evtchn_readable(struct dmodel *m, int timeout_ms)
{
	struct pollfd p = { .fd = xenevtchn_fd(m->xce), .events = POLLIN };

	return poll(&p, 1, timeout_ms);
}

static void assert_nothing_pending(struct dmodel *m)
{
	assert_int_equal(evtchn_readable(m, 0), 0);
	assert_int_equal(xenevtchn_pending(m->xce), -1);
	assert_int_equal(errno, EAGAIN);
}

/* Fired three times while masked: delivered once on unmask, then nothing. */
static void test_evtchn_masked_once(void **state)
{
	struct fx *f = *state;
	struct dmodel m;

	assert_int_equal(dmodel_open(&m, 1), 0);
	fcntl(xenevtchn_fd(m.xce), F_SETFL, O_NONBLOCK);
	assert_nothing_pending(&m);
	fire(f->dom, 5);
	assert_int_equal(evtchn_readable(&m, 1000), 1);
	assert_int_equal(xenevtchn_pending(m.xce), m.port[5]);
	for (int i = 0; i < 3; i++)
		fire(f->dom, 5);
	assert_nothing_pending(&m);
	assert_int_equal(xenevtchn_unmask(m.xce, m.port[5]), 0);
	assert_int_equal(evtchn_readable(&m, 0), 1);
	assert_int_equal(xenevtchn_pending(m.xce), m.port[5]);
	assert_nothing_pending(&m);
	/* Unmasked with nothing fired since: nothing comes. */
	assert_int_equal(xenevtchn_unmask(m.xce, m.port[5]), 0);
	assert_nothing_pending(&m);
	/* A port that never fired: unmasking it delivers nothing either. */
	assert_int_equal(xenevtchn_unmask(m.xce, m.port[7]), 0);
	assert_nothing_pending(&m);
	/* Unbound: a signal is lost, as in Xen; not our port any more. */
	assert_int_equal(xenevtchn_unmask(m.xce, m.port[5]), 0);
	assert_int_equal(xenevtchn_unbind(m.xce, m.port[5]), 0);
	fire(f->dom, 5);
	assert_nothing_pending(&m);
	assert_int_equal(xenevtchn_unmask(m.xce, m.port[5]), -1);
	assert_int_equal(errno, EINVAL);
	m.port[5] = 0;
	dmodel_close(&m);
}

/*
 * A reader killed inside xenevtchn_pending(), after its read() drained the doorbell and before
 * it cleared `kicked`, leaves a port queued and no message to read. In Linux the queue is the
 * kernel's: a process given the fd (a restarted daemon, from the fd store) finds it readable
 * while anything is queued, and later events wake it. So must it here.
 */
static void test_evtchn_reader_killed_mid_read(void **state)
{
	struct fx *f = *state;
	struct dmodel m;
	struct dmodel next;
	char buf[16];

	assert_int_equal(dmodel_open(&m, 1), 0);
	fcntl(xenevtchn_fd(m.xce), F_SETFL, O_NONBLOCK);
	fire(f->dom, 5);
	assert_int_equal(evtchn_readable(&m, 1000), 1);
	/* The dying reader's half of xenevtchn_pending(): the doorbell read, nothing after. */
	assert_true(read(xenevtchn_fd(m.xce), buf, sizeof(buf)) > 0);
	next = m;
	next.xce = xenevtchn_fdopen(NULL, dup(xenevtchn_fd(m.xce)), 0);
	assert_non_null(next.xce);
	fcntl(xenevtchn_fd(next.xce), F_SETFL, O_NONBLOCK);
	assert_int_equal(evtchn_readable(&next, 1000), 1);
	assert_int_equal(xenevtchn_pending(next.xce), m.port[5]);
	assert_int_equal(xenevtchn_unmask(next.xce, m.port[5]), 0);
	assert_nothing_pending(&next);
	/* And the next event wakes the new reader. */
	fire(f->dom, 5);
	assert_int_equal(evtchn_readable(&next, 1000), 1);
	assert_int_equal(xenevtchn_pending(next.xce), m.port[5]);
	xenevtchn_close(next.xce);
	dmodel_close(&m);
}

struct later_fire {
	struct xsim_dom *d;
	unsigned vcpu;
};

static void *fire_later(void *arg)
{
	struct later_fire *lf = arg;
	struct ioreq req = { .addr = WIN_BASE, .count = 1, .size = 4,
			     .state = STATE_IOREQ_READY, .type = IOREQ_TYPE_COPY };

	usleep(50000);
	xsim_ioreq_raw(lf->d, lf->vcpu, WIN_BASE, &req, NULL, 0);
	return NULL;
}

/* Every port fired between two reads comes back once; a blocking fd waits for the next one. */
static void test_evtchn_many_ports(void **state)
{
	struct fx *f = *state;
	struct later_fire lf = { f->dom, 199 };
	struct dmodel m;
	unsigned seen[200] = { 0 };
	pthread_t t;
	int fl;

	assert_int_equal(dmodel_open(&m, 1), 0);
	fl = fcntl(xenevtchn_fd(m.xce), F_GETFL);
	fcntl(xenevtchn_fd(m.xce), F_SETFL, fl | O_NONBLOCK);
	for (unsigned v = 200; v-- > 0;)
		fire(f->dom, v);
	for (unsigned i = 0; i < 200; i++) {
		int v = vcpu_of(&m, (evtchn_port_t)xenevtchn_pending(m.xce));

		assert_true(v >= 0);
		seen[v]++;
		/* Readable exactly while something is queued. */
		assert_int_equal(evtchn_readable(&m, 0), i < 199);
	}
	for (unsigned v = 0; v < 200; v++)
		assert_int_equal(seen[v], 1);
	assert_nothing_pending(&m);
	for (unsigned v = 0; v < 200; v++)
		assert_int_equal(xenevtchn_unmask(m.xce, m.port[v]), 0);
	assert_nothing_pending(&m);
	/* Blocking: xenevtchn_pending waits for the port fired 50 ms later. */
	fcntl(xenevtchn_fd(m.xce), F_SETFL, fl & ~O_NONBLOCK);
	assert_int_equal(pthread_create(&t, NULL, fire_later, &lf), 0);
	assert_int_equal(xenevtchn_pending(m.xce), m.port[199]);
	pthread_join(t, NULL);
	dmodel_close(&m);
}

/*
 * No lost wakeup: a guest thread fires EV_PORTS ports, each again as soon as the reader has
 * acknowledged it (the reader acknowledges before it unmasks, so the port often fires while
 * still masked); the reader drains with a non-blocking xenevtchn_pending loop until EAGAIN and
 * then polls, as the daemon's loop does. Every signal is delivered exactly once.
 */
#define EV_PORTS   8u
#define EV_SIGNALS 1000000u

struct ev_stress {
	struct xsim_dom *d;
	struct dmodel *m;
	int ackfd;                      /* eventfd: the reader acknowledged something */
	_Atomic uint32_t acked[EV_PORTS];
	atomic_bool stop;               /* the reader gave up */
	uint32_t fired[EV_PORTS];
	uint32_t delivered[EV_PORTS];
	unsigned lost_wakeups, bad_ports;
};

static void *ev_guest(void *arg)
{
	struct ev_stress *st = arg;
	unsigned total = 0;
	uint64_t n;

	for (unsigned v = 0; v < EV_PORTS; v++, total++) {
		st->fired[v] = 1;
		fire(st->d, v);
	}
	while (total < EV_SIGNALS) {
		if (read(st->ackfd, &n, sizeof(n)) != sizeof(n) || atomic_load(&st->stop))
			break;
		for (unsigned v = 0; v < EV_PORTS && total < EV_SIGNALS; v++) {
			/* acquire: the reader was done with the previous signal. */
			if (atomic_load_explicit(&st->acked[v], memory_order_acquire) !=
			    st->fired[v])
				continue;
			st->fired[v]++;
			total++;
			fire(st->d, v);
		}
	}
	return NULL;
}

static void ev_reader(struct ev_stress *st)
{
	uint64_t one = 1;
	unsigned total = 0;

	while (total < EV_SIGNALS) {
		int port;

		while ((port = xenevtchn_pending(st->m->xce)) >= 0) {
			int v = vcpu_of(st->m, (evtchn_port_t)port);

			if (v < 0 || (unsigned)v >= EV_PORTS) {
				st->bad_ports++;
				continue;
			}
			st->delivered[v]++;
			total++;
			atomic_fetch_add_explicit(&st->acked[v], 1, memory_order_release);
			if (write(st->ackfd, &one, sizeof(one)) != sizeof(one))
				st->bad_ports++;
			xenevtchn_unmask(st->m->xce, (evtchn_port_t)port);
		}
		if (errno != EAGAIN || (total < EV_SIGNALS && evtchn_readable(st->m, 5000) != 1)) {
			st->lost_wakeups++;
			break;
		}
	}
}

static void test_evtchn_no_lost_wakeup(void **state)
{
	struct fx *f = *state;
	struct dmodel m;
	struct ev_stress *st = calloc(1, sizeof(*st));
	unsigned fired = 0, delivered = 0;
	pthread_t t;

	assert_non_null(st);
	assert_int_equal(dmodel_open(&m, 1), 0);
	fcntl(xenevtchn_fd(m.xce), F_SETFL, O_NONBLOCK);
	st->d = f->dom;
	st->m = &m;
	st->ackfd = eventfd(0, EFD_CLOEXEC);
	assert_true(st->ackfd >= 0);
	assert_int_equal(pthread_create(&t, NULL, ev_guest, st), 0);
	ev_reader(st);
	if (st->lost_wakeups) {
		uint64_t unblock = 1;

		/* Let the guest thread finish so the test can report. */
		atomic_store(&st->stop, true);
		if (write(st->ackfd, &unblock, sizeof(unblock)) < 0)
			pthread_cancel(t);
	}
	pthread_join(t, NULL);
	for (unsigned v = 0; v < EV_PORTS; v++) {
		assert_int_equal(st->delivered[v], st->fired[v]);
		fired += st->fired[v];
		delivered += st->delivered[v];
	}
	assert_int_equal(st->lost_wakeups, 0);
	assert_int_equal(st->bad_ports, 0);
	assert_int_equal(fired, EV_SIGNALS);
	assert_int_equal(delivered, EV_SIGNALS);
	assert_int_equal(xenevtchn_pending(m.xce), -1);
	assert_int_equal(errno, EAGAIN);
	close(st->ackfd);
	free(st);
	dmodel_close(&m);
}

/* ---- ioreq round trip with the device model in another process ---- */

#define STOP_OFF 0x1fc

/* Answer reads with addr ^ vcpu and count writes, until a write to STOP_OFF. Exit codes
 * name the step that failed. */
static int child_serve(void)
{
	struct dmodel m;
	unsigned writes = 0;

	if (dmodel_open(&m, 1) < 0)
		return 10;
	for (;;) {
		int port = xenevtchn_pending(m.xce);
		int v = port < 0 ? -1 : vcpu_of(&m, (evtchn_port_t)port);
		ioreq_t *s;
		bool stop = false;

		if (v < 0)
			return 11;
		s = &m.slots[v];
		if (s->state == STATE_IOREQ_READY) {
			atomic_thread_fence(memory_order_acquire);
			if (s->type != IOREQ_TYPE_COPY || s->count != 1)
				return 12;
			if (s->dir == IOREQ_READ)
				s->data = s->addr ^ (uint64_t)v;
			else if (s->addr == WIN_BASE + STOP_OFF)
				stop = true;
			else
				writes++;
			atomic_thread_fence(memory_order_release);
			s->state = STATE_IORESP_READY;
			if (xenevtchn_notify(m.xce, (evtchn_port_t)port) < 0)
				return 13;
		}
		xenevtchn_unmask(m.xce, (evtchn_port_t)port);
		if (stop)
			break;
	}
	dmodel_close(&m);
	return writes == 3 ? 0 : 14;
}

static void test_ioreq_roundtrip_child(void **state)
{
	struct fx *f = *state;
	pid_t pid = fork();
	int st, i;
	uint64_t v;

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_serve());
	for (i = 0; i < 500 && !xsim_dom_routed(f->dom, WIN_BASE); i++)
		usleep(10000);
	assert_true(xsim_dom_routed(f->dom, WIN_BASE));
	assert_int_equal(xsim_mmio(f->dom, 0, WIN_BASE + 8, 4, false, &v, 2000), 0);
	assert_int_equal(v, (WIN_BASE + 8) & 0xffffffff);
	assert_int_equal(xsim_mmio(f->dom, 199, WIN_BASE + 0x10, 8, false, &v, 2000), 0);
	assert_int_equal(v, (WIN_BASE + 0x10) ^ 199);
	/* A 1-byte read is truncated to its size by the guest side. */
	assert_int_equal(xsim_mmio(f->dom, 128, WIN_BASE + 0x20, 1, false, &v, 2000), 0);
	assert_int_equal(v, ((WIN_BASE + 0x20) ^ 128) & 0xff);
	for (i = 0; i < 3; i++)
		assert_int_equal(xsim_mmio_write(f->dom, (unsigned)i * 60, WIN_BASE, 4, 1), 0);
	assert_int_equal(xsim_mmio(f->dom, 0, WIN_BASE + 0x200, 4, false, &v, 100), -EFAULT);
	assert_int_equal(xsim_mmio_write(f->dom, 5, WIN_BASE + STOP_OFF, 4, 0), 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* The server outlives its process, as in Xen: nobody answers now. */
	assert_int_equal(xsim_mmio(f->dom, 0, WIN_BASE + 8, 4, false, &v, 50), -ETIMEDOUT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_xs_read_write_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xs_watch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xs_watch_no_loss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xs_release_domain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xs_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fmem_map, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ram_unpinnable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gnttab, setup, teardown),
		cmocka_unit_test_setup_teardown(test_irq_edges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ioreq_setup_and_masking, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_servers_routing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_ioreq_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ioreq_roundtrip_child, setup, teardown),
		cmocka_unit_test_setup_teardown(test_evtchn_masked_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_evtchn_reader_killed_mid_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_evtchn_many_ports, setup, teardown),
		cmocka_unit_test_setup_teardown(test_evtchn_no_lost_wakeup, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
