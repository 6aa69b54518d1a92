/*
 * One MMIO register round trip through the ioreq slot, against a bare eventfd ping-pong between
 * two processes (the floor: two cross-process wakeups, nothing else).
 *
 * Ours: the test process plays Xen and the vCPU (xsim_mmio_read of MagicValue: fill the slot,
 * fire the port, which kicks the daemon's event-channel fd, wait for IORESP_READY); the real sim
 * daemon answers from its libev loop (evtchn fd readable, pending port, copy and validate the
 * ioreq, transport decode, response, notify, unmask, pending until EAGAIN). Baseline: a forked child blocks in read() on one eventfd and writes
 * the other; the parent writes, then blocks in read(). Rounds alternate ours and baseline so
 * a load change on a shared machine hits both; the medians are reported.
 *
 *   BENCH mmio_roundtrip value=<us> unit=us baseline=<us> ratio=<baseline/value>
 *   BENCH mmio_floor_shaped    (info) the ping-pong with the same syscalls as the simulated
 *                              path on both sides but no work: what the path's shape costs
 *
 * Environment: BENCH_QUICK=1 (fewer, shorter rounds), BENCH_MMIO_N (round trips per round).
 */
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "tests/bench/bench_common.h"

#define R_MAGIC      0x000
#define VIRTIO_MAGIC 0x74726976u
#define MAX_ROUNDS   15

struct pingpong {
	int to_child, to_parent;
	pid_t pid;
	_Atomic uint32_t *resp;     /* shaped: the response counter, a shared futex */
};

static int pingpong_start(struct pingpong *p)
{
	p->to_child = eventfd(0, EFD_CLOEXEC);
	p->to_parent = eventfd(0, EFD_CLOEXEC);
	if (p->to_child < 0 || p->to_parent < 0)
		return -1;
	p->pid = fork();
	if (p->pid == 0)
		bench_pong_loop(p->to_child, p->to_parent);
	return p->pid < 0 ? -1 : 0;
}

static void pingpong_stop(struct pingpong *p)
{
	uint64_t bye = BENCH_PING_EXIT;

	if (write(p->to_child, &bye, sizeof(bye)) != sizeof(bye))
		kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	close(p->to_child);
	close(p->to_parent);
}

/* Microseconds per ping-pong over n rounds; < 0 on error. */
static double pingpong_run(struct pingpong *p, unsigned n)
{
	uint64_t one = 1, v;
	double t0 = bench_now();

	for (unsigned i = 0; i < n; i++)
		if (write(p->to_child, &one, sizeof(one)) != sizeof(one) ||
		    read(p->to_parent, &v, sizeof(v)) != sizeof(v))
			return -1;
	return (bench_now() - t0) * 1e6 / n;
}

/*
 * The same two wakeups with the syscalls of the simulated path and none of its work: the
 * responder waits in an epoll set holding the doorbell eventfd (libev's loop around xensim's
 * event-channel fd), reads the doorbell (xenevtchn_pending drains it as it takes the last
 * queued port), bumps a shared counter and wakes it (xenevtchn_notify) and reads the doorbell
 * once more, which fails with EAGAIN (the pending call that ends the drain). The requester
 * writes the doorbell and waits on the counter (a futex), as xensim's guest side does.
 */
static void shaped_pong_loop(int in, _Atomic uint32_t *resp)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN }, got;
	uint64_t v;

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, in, &ev) < 0)
		_exit(1);
	for (;;) {
		if (epoll_wait(ep, &got, 1, -1) < 0)
			continue;
		while (read(in, &v, sizeof(v)) == sizeof(v)) {
			if (v >= BENCH_PING_EXIT)
				_exit(0);
			atomic_fetch_add_explicit(resp, 1, memory_order_release);
			syscall(SYS_futex, (uint32_t *)resp, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
		}
	}
}

static int shaped_start(struct pingpong *p)
{
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	p->to_child = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	p->to_parent = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);   /* unused; pingpong_stop closes it */
	if (p->to_child < 0 || p->to_parent < 0 || page == MAP_FAILED)
		return -1;
	p->resp = page;
	p->pid = fork();
	if (p->pid == 0)
		shaped_pong_loop(p->to_child, p->resp);
	return p->pid < 0 ? -1 : 0;
}

static double shaped_run(struct pingpong *p, unsigned n)
{
	uint64_t one = 1;
	double t0 = bench_now();

	for (unsigned i = 0; i < n; i++) {
		uint32_t seen = atomic_load_explicit(p->resp, memory_order_acquire);
		struct timespec ts = { 5, 0 };

		if (write(p->to_child, &one, sizeof(one)) != sizeof(one))
			return -1;
		while (atomic_load_explicit(p->resp, memory_order_acquire) == seen)
			if (syscall(SYS_futex, (uint32_t *)p->resp, FUTEX_WAIT, seen, &ts, NULL, 0) < 0 &&
			    errno == ETIMEDOUT)
				return -1;
	}
	return (bench_now() - t0) * 1e6 / n;
}

/* Microseconds per register read through the ioreq slot; < 0 when one failed. */
static double mmio_run(struct xsim_dom *d, unsigned n)
{
	double t0 = bench_now();

	for (unsigned i = 0; i < n; i++)
		if (xsim_mmio_read(d, 0, BENCH_WIN(0) + R_MAGIC, 4) != VIRTIO_MAGIC)
			return -1;
	return (bench_now() - t0) * 1e6 / n;
}

int main(void)
{
	bool quick = bench_quick();
	unsigned rounds = quick ? 5 : 9;
	unsigned n = (unsigned)bench_env_u64("BENCH_MMIO_N", quick ? 4000 : 20000);
	double ours[MAX_ROUNDS], base[MAX_ROUNDS], shaped[MAX_ROUNDS];
	struct xsim_hub *hub = xsim_hub_start();
	struct xsim_dom *dom = hub ? xsim_dom_create(hub, &(struct xsim_dom_opts){
						.name = "mmio", .ram_mib = 16 }) : NULL;
	struct xsim_daemon dm = { .pid = -1 };
	struct pingpong pp, sp;
	char ini[256];
	int rc = 0;

	snprintf(ini, sizeof(ini), "[guest]\nname = mmio\ndiscovery = explicit\n\n"
		 "[rng]\nmmio = 0x%llx\nirq = %u\n", (unsigned long long)BENCH_WIN(0),
		 BENCH_SPI(0));
	if (!dom || bench_daemon_start(hub, &dm, "mmio", ini, NULL, NULL, NULL) < 0 ||
	    pingpong_start(&pp) < 0 || shaped_start(&sp) < 0) {
		fprintf(stderr, "mmio_bench: setup failed\n");
		if (dm.pid > 0)
			xsim_daemon_stop(&dm);
		xsim_hub_stop(hub);
		return 1;
	}
	/* Warm both paths: page faults, the daemon's first ioreqs, the scheduler's placement. */
	mmio_run(dom, n / 10 + 1);
	pingpong_run(&pp, n / 10 + 1);
	shaped_run(&sp, n / 10 + 1);
	for (unsigned r = 0; r < rounds; r++) {
		ours[r] = mmio_run(dom, n);
		base[r] = pingpong_run(&pp, n);
		shaped[r] = shaped_run(&sp, n);
		if (ours[r] < 0 || base[r] < 0 || shaped[r] < 0)
			rc = 1;
	}
	double mo = bench_median(ours, rounds), mb = bench_median(base, rounds);

	/* Sorted by bench_median: [0] is the fastest round. */
	fprintf(stderr, "# mmio_roundtrip: %u rounds of %u; fastest round: ours %.2f us, "
		"eventfd %.2f us\n", rounds, n, ours[0], base[0]);
	if (rc)
		bench_skip("mmio_roundtrip", "a round trip failed");
	else
		bench_line("mmio_roundtrip", mo, "us", mb, false);
	/* Info: how much of the gap is the shape of the path rather than the daemon's work. */
	if (!rc)
		bench_line("mmio_floor_shaped", bench_median(shaped, rounds), "us", mb, false);
	pingpong_stop(&pp);
	pingpong_stop(&sp);
	xsim_daemon_stop(&dm);
	xsim_hub_stop(hub);
	return rc;
}
