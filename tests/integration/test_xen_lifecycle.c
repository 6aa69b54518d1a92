/*
 * ioreq/server.c in process, against the xensim drop-in libraries: open, add, start and close
 * as the daemon's guest.c does (with a window that answers like a virtio-mmio device's first
 * registers: ioreq/ knows windows, not devices), with the failure paths a daemon cannot easily reach: a domain
 * that does not exist, bad or overlapping windows, a guest closed before it was started, and
 * repeated open/close without leaking a file descriptor or leaving a window routed.
 * The Xen side runs in a forked child, the guest's side in the test process.
 * Built by ioreq/ioreq.mk (it links the ioreq objects and libxensim).
 */
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "ioreq/xen.h"
#include "ioreq/xen_stats.h"
#include "lib/log.h"
#include "tests/xensim/guest.h"

#define WIN0  UINT64_C(0x02000000)
#define MAGIC 0x74726976u

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); \
			_exit(__LINE__ % 250 + 1); } } while (0)

struct lc {
	struct xsim_hub *hub;
	struct xsim_dom *dom;
	int to_child[2], to_parent[2];
};

static void lc_send(int fd, char c)
{
	if (write(fd, &c, 1) != 1)
		_exit(99);
}

static char lc_recv(int fd)
{
	char c = 0;

	return read(fd, &c, 1) == 1 ? c : 0;
}

static unsigned lc_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

static struct xen_opts lc_opts(struct lc *t)
{
	return (struct xen_opts){ .domid = xsim_dom_id(t->dom), .map_cache_mib = 8 };
}

/* The window: MagicValue at 0, "DeviceID" 4 at 8, zero elsewhere; writes are counted. */
static unsigned lc_writes;

static uint64_t lc_read(void *opaque, uint32_t off, unsigned size)
{
	(void)opaque;
	(void)size;
	return off == 0 ? MAGIC : off == 8 ? 4 : 0;
}

static int lc_held_fd = -1;   /* told 'h' when a write is held (the child of test_held_write) */

/* A write of 0x70 (Status) with 0 is held (XEN_WINDOW_LATER) until xen_window_done(). */
static int lc_write(void *opaque, uint32_t off, unsigned size, uint64_t val)
{
	(void)opaque;
	(void)size;
	lc_writes++;
	if (off != 0x70 || val != 0)
		return 0;
	if (lc_held_fd >= 0)
		lc_send(lc_held_fd, 'h');
	return XEN_WINDOW_LATER;
}

static void lc_notify(void *opaque, unsigned q)
{
	(void)opaque;
	(void)q;
}

static const struct xen_window_ops lc_ops = { lc_read, lc_write, lc_notify };
static struct xen_window *lc_win;   /* the last window lc_add() added */

static int lc_add(struct xen_guest *g, uint64_t base, uint32_t irq)
{
	struct xen_window_desc d = { .name = "test window", .base = base, .irq = irq,
				     .nqueues = 1, .ops = &lc_ops };
	struct xen_window *w = NULL;
	int rc = xen_guest_add_window(g, &d, &w);

	CHECK((rc == 0) == (w != NULL));
	lc_win = w;
	return rc;
}

static void lc_run(struct lc *t, void (*child)(struct lc *t), void (*parent)(struct lc *t))
{
	struct xsim_dom_opts o = { .name = "guest1", .nr_vcpus = 3, .ram_mib = 16 };
	int status = -1;
	pid_t pid;

	memset(t, 0, sizeof(*t));
	t->hub = xsim_hub_start();
	assert_non_null(t->hub);
	t->dom = xsim_dom_create(t->hub, &o);
	assert_non_null(t->dom);
	assert_int_equal(pipe(t->to_child), 0);
	assert_int_equal(pipe(t->to_parent), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* A parent that fails an assertion must not leave its Xen side waiting on the hub. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
			_exit(98);
		child(t);
		_exit(0);
	}
	if (parent)
		parent(t);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	xsim_hub_stop(t->hub);
	for (int i = 0; i < 2; i++) {
		close(t->to_child[i]);
		close(t->to_parent[i]);
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- a domain that is not there ---- */

static void child_no_domain(struct lc *t)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct xen_opts o = lc_opts(t);
	struct xen_guest *g = (struct xen_guest *)(uintptr_t)1;   /* must come back NULL */
	unsigned fds = lc_count_fds();

	o.domid = 4242;
	CHECK(xen_guest_open(loop, &o, &g) < 0);
	CHECK(g == NULL);
	CHECK(lc_count_fds() == fds);
	xen_guest_close(NULL);
	ev_loop_destroy(loop);
}

static void test_no_domain(void **state)
{
	struct lc t;

	(void)state;
	lc_run(&t, child_no_domain, NULL);
}

/* ---- windows: bad ones refused, the good one routed until close ---- */

static void child_windows(struct lc *t)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct xen_opts o = lc_opts(t);
	struct xen_guest *g;

	CHECK(xen_guest_open(loop, &o, &g) == 0);
	CHECK(lc_add(g, WIN0, 33) == 0);
	CHECK(lc_add(g, WIN0 + 0x100, 34) == -EINVAL);   /* overlaps */
	CHECK(lc_add(g, WIN0 - 0x100, 34) == -EINVAL);   /* overlaps */
	CHECK(lc_add(g, UINT64_MAX - 0x100, 34) == -EINVAL);
	CHECK(lc_add(g, WIN0 + 0x400, 5) == -EINVAL);    /* not an SPI */
	CHECK(xen_guest_start(g, NULL, NULL) == 0);
	lc_send(t->to_parent[1], 'r');
	/* Serve until the parent has read the device through a vCPU slot. */
	while (lc_recv(t->to_child[0]) != 'c')
		;
	xen_guest_close(g);
	ev_loop_destroy(loop);
	lc_send(t->to_parent[1], 'd');
}

static void parent_windows(struct lc *t)
{
	assert_int_equal(lc_recv(t->to_parent[0]), 'r');
	assert_true(xsim_dom_routed(t->dom, WIN0));
	assert_false(xsim_dom_routed(t->dom, WIN0 + 0x200));
	uint64_t v = 0;

	/* The child is blocked in read(), not in its loop: nobody serves, the access times out. */
	assert_int_equal(xsim_mmio(t->dom, 0, WIN0, 4, false, &v, 200), -ETIMEDOUT);
	lc_send(t->to_child[1], 'c');
	assert_int_equal(lc_recv(t->to_parent[0]), 'd');
	assert_false(xsim_dom_routed(t->dom, WIN0));
}

static void test_windows(void **state)
{
	struct lc t;

	(void)state;
	lc_run(&t, child_windows, parent_windows);
}

/* ---- served from the loop, then closed: everything unrouted ---- */

static void lc_stop_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	ev_io_stop(loop, w);
	ev_break(loop, EVBREAK_ALL);
}

static void child_serve(struct lc *t)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct xen_opts o = lc_opts(t);
	struct xen_guest_stats st;
	struct xen_guest *g;
	ev_io stop;

	CHECK(xen_guest_open(loop, &o, &g) == 0);
	CHECK(lc_add(g, WIN0, 33) == 0);
	CHECK(xen_guest_start(g, NULL, NULL) == 0);
	ev_io_init(&stop, lc_stop_cb, t->to_child[0], EV_READ);
	ev_io_start(loop, &stop);
	lc_send(t->to_parent[1], 'r');
	ev_run(loop, 0);
	xen_guest_get_stats(g, &st);
	CHECK(st.nr_vcpus == 3 && st.nr_frames == 1 && st.ioreqs == 9 && st.bad_ioreqs == 0);
	CHECK(lc_writes == 3);
	xen_guest_close(g);
	ev_loop_destroy(loop);
	lc_send(t->to_parent[1], 'd');
}

static void parent_serve(struct lc *t)
{
	assert_int_equal(lc_recv(t->to_parent[0]), 'r');
	for (unsigned vcpu = 0; vcpu < 3; vcpu++) {
		assert_int_equal(xsim_mmio_read(t->dom, vcpu, WIN0, 4), MAGIC);
		assert_int_equal(xsim_mmio_read(t->dom, vcpu, WIN0 + 8, 4), 4);
		assert_int_equal(xsim_mmio_write(t->dom, vcpu, WIN0 + 0x70, 4, 1), 0);
	}
	lc_send(t->to_child[1], 'c');
	assert_int_equal(lc_recv(t->to_parent[0]), 'd');
	assert_false(xsim_dom_routed(t->dom, WIN0));
}

static void test_serve_and_close(void **state)
{
	struct lc t;

	(void)state;
	lc_run(&t, child_serve, parent_serve);
}

/* ---- a write the window holds: that vCPU waits, the others are served ---- */

static void lc_hold_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	char c = lc_recv(w->fd);

	(void)revents;
	if (c == 'r') {
		xen_window_done(lc_win);
		return;
	}
	ev_io_stop(loop, w);
	ev_break(loop, EVBREAK_ALL);
}

static void child_hold(struct lc *t)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct xen_opts o = lc_opts(t);
	struct xen_guest *g;
	ev_io cmd;

	CHECK(xen_guest_open(loop, &o, &g) == 0);
	CHECK(lc_add(g, WIN0, 33) == 0);
	CHECK(xen_guest_start(g, NULL, NULL) == 0);
	ev_io_init(&cmd, lc_hold_cb, t->to_child[0], EV_READ);
	ev_io_start(loop, &cmd);
	lc_held_fd = t->to_parent[1];
	lc_send(t->to_parent[1], 'r');
	ev_run(loop, 0);
	xen_guest_close(g);
	ev_loop_destroy(loop);
	lc_send(t->to_parent[1], 'd');
}

struct lc_held {
	struct lc *t;
	int rc;
	bool done;
};

static void *lc_held_writer(void *arg)
{
	struct lc_held *h = arg;
	uint64_t v = 0;

	/* Held for as long as the 100 accesses below take, which a loaded machine stretches. */
	h->rc = xsim_mmio(h->t->dom, 0, WIN0 + 0x70, 4, true, &v, 120000);
	__atomic_store_n(&h->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void parent_hold(struct lc *t)
{
	struct lc_held h = { .t = t };
	pthread_t th;

	assert_int_equal(lc_recv(t->to_parent[0]), 'r');
	assert_int_equal(pthread_create(&th, NULL, lc_held_writer, &h), 0);
	/* Released only once it is held: a release before would answer nothing (a loaded machine). */
	assert_int_equal(lc_recv(t->to_parent[0]), 'h');
	/* vCPU 0 is held on its write; vCPU 1 and 2 are served meanwhile, many times over. */
	for (int i = 0; i < 50; i++) {
		assert_int_equal(xsim_mmio_read(t->dom, 1 + i % 2, WIN0, 4), MAGIC);
		assert_int_equal(xsim_mmio_write(t->dom, 1 + i % 2, WIN0 + 0x64, 4, 1), 0);
	}
	assert_false(__atomic_load_n(&h.done, __ATOMIC_ACQUIRE));
	lc_send(t->to_child[1], 'r');    /* xen_window_done() */
	pthread_join(th, NULL);
	assert_int_equal(h.rc, 0);
	assert_int_equal(xsim_mmio_read(t->dom, 0, WIN0, 4), MAGIC);
	lc_send(t->to_child[1], 'c');
	assert_int_equal(lc_recv(t->to_parent[0]), 'd');
}

static void test_held_write(void **state)
{
	struct lc t;

	(void)state;
	lc_run(&t, child_hold, parent_hold);
}

/* ---- open and close, started or not, many times: no descriptor left behind ---- */

static void child_repeat(struct lc *t)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct xen_opts o = lc_opts(t);
	unsigned fds = lc_count_fds();

	for (int i = 0; i < 40; i++) {
		struct xen_guest *g;

		o.premap = i % 4 == 3;
		CHECK(xen_guest_open(loop, &o, &g) == 0);
		if (i % 2)
			CHECK(lc_add(g, WIN0 + (uint64_t)(i % 8) * 0x200, 40) == 0);
		if (i % 3 == 0)
			CHECK(xen_guest_start(g, NULL, NULL) == 0);
		xen_guest_close(g);
		CHECK(lc_count_fds() == fds);
	}
	ev_loop_destroy(loop);
}

static void test_repeat_open_close(void **state)
{
	struct lc t;

	(void)state;
	lc_run(&t, child_repeat, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_domain),
		cmocka_unit_test(test_windows),
		cmocka_unit_test(test_serve_and_close),
		cmocka_unit_test(test_held_write),
		cmocka_unit_test(test_repeat_open_close),
	};

	log_init(LOG_WARNING, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
