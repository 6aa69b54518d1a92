/*
 * What one request costs the daemon, measured on virtio-rng (no backend latency of its own, so
 * the figure is the daemon's path), one 64-byte request at a time as Linux's hwrng reader does:
 * the guest's kick is one ioreq; the daemon pops the chain, fills it (getrandom), pushes it and
 * raises the interrupt while answering that ioreq, so the driver finds the buffer used at once
 * (vdrv_transfer) and reads no InterruptStatus.
 *
 *   BENCH cpu_per_request      user+sys of the daemon (/proc/<pid>/schedstat) over N requests, per
 *                              request, in microseconds. Baseline: the CPU the responder of a
 *                              bare eventfd ping-pong spends per round trip (the floor for one
 *                              wakeup and answer); ratio = baseline / value.
 *   BENCH instr_per_request    instructions per request, valgrind --tool=callgrind on the sim
 *                              daemon, inclusive in the event-channel handler (ioreqs, device
 *                              work, interrupt): (run with N requests - idle run with none) / N.
 *                              The idle run does the same start, driver initialisation and
 *                              stop; the fewest of three pairs is reported. No baseline (0):
 *                              lower is better; the stable figure to compare commits with on a
 *                              noisy machine.
 *   BENCH instr_per_request_process  the same from the whole process's totals: adds the loop
 *                              and timers, so it grows when a loaded machine stretches the run.
 *   BENCH gmem_cache_hit_rate  guest-memory cache hits / lookups in steady state, from the
 *                              daemon's SIGUSR1 stats line before and after the measured run.
 *   BENCH cpu_per_request_grants  the same guest with grant_usage = yes (buffers given as grant
 *                              addresses), run alternately with the first; baseline: the
 *                              foreign-mapping figure, so ratio = foreign / grants.
 *   BENCH gmem_cache_hit_rate_grants, grant_maps_per_request  its lookups (grant mappings are
 *                              never cached) and grant mappings per request.
 *
 * Environment: BENCH_QUICK=1, BENCH_CPU_N (requests per round), BENCH_CG_N (requests under
 * callgrind), BENCH_NO_VALGRIND=1 (skip the callgrind case).
 */
#include <inttypes.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>

#include "devices/device.h"
#include "tests/bench/bench_common.h"
#include "tests/bench/bench_cost.h"

#define MAX_ROUNDS 9
#define REQ_LEN    64
/* ioreq/server.c's event-channel callback: everything a guest access sets off runs inside it. */
static const char *const cg_handlers[] = { "xg_evtchn_cb", NULL };

struct rng_guest {
	BENCH_GUEST_MEMBERS;
	struct vdrv_buf buf;
};

/*
 * The ioreq path, as this benchmark has always measured it (the kick answered with the device
 * work inside it). With the notify fast path the kick returns at once and the driver waits for
 * the interrupt and acknowledges it: two more ioreqs per request (docs/PERFORMANCE.md).
 */
static const char ini_fmt[] = "[guest]\nname = %s\ndiscovery = explicit\ngrant_usage = %s\n"
			      "notify_fastpath = off\n\n"
			      "[rng]\nmmio = 0x%llx\nirq = %u\nrate = 0\n";

/* The next rng_start gives the device grant addresses (grant_usage = yes). */
static bool use_grants;

static int rng_start(void *p, const char *tag, const char *binary,
		     const char *const *pre)
{
	struct rng_guest *g = p;
	char ini[256];

	memset(g, 0, sizeof(*g));
	g->dm.pid = -1;
	g->hub = xsim_hub_start();
	g->dom = g->hub ? xsim_dom_create(g->hub, &(struct xsim_dom_opts){ .name = tag,
									 .ram_mib = 16 }) : NULL;
	if (!g->dom)
		return -1;
	snprintf(ini, sizeof(ini), ini_fmt, tag, use_grants ? "yes" : "no",
		 (unsigned long long)BENCH_WIN(0), BENCH_SPI(0));
	if (bench_daemon_start(g->hub, &g->dm, tag, ini, binary, pre, "notice") < 0)
		return -1;
	xsim_vio_init(&g->vio, g->dom, 0, BENCH_WIN(0), BENCH_SPI(0));
	g->vio.timeout_ms = 60000;    /* valgrind is slow */
	if (xsim_vmem_init(&g->mem, g->dom, BENCH_RAM, 1u << 20, use_grants) < 0 ||
	    vdrv_init(&g->drv, &g->vio.io, &g->mem, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
		      (use_grants ? VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM) : 0), 1, 64) < 0)
		return -1;
	g->buf = (struct vdrv_buf){ vdrv_alloc(&g->mem, REQ_LEN, 64, NULL), REQ_LEN, true };
	return g->buf.gpa ? 0 : -1;
}

static void rng_stop(void *p)
{
	struct rng_guest *g = p;

	if (g->dm.pid > 0)
		xsim_daemon_stop(&g->dm);
	xsim_hub_stop(g->hub);
}

static int rng_requests(void *p, unsigned n)
{
	struct rng_guest *g = p;

	for (unsigned i = 0; i < n; i++)
		if (vdrv_transfer(&g->drv, 0, &g->buf, 1, false, 60000) != REQ_LEN)
			return -1;
	return 0;
}

/* ---- the ping-pong floor ---- */

/* CPU seconds the responder spent per round trip over n round trips; < 0 on error. */
static double pong_cpu(unsigned n)
{
	int in = eventfd(0, EFD_CLOEXEC), out = eventfd(0, EFD_CLOEXEC);
	uint64_t one = 1, v, bye = BENCH_PING_EXIT;
	double c0, c1 = -1;
	pid_t pid;

	if (in < 0 || out < 0)
		return -1;
	pid = fork();
	if (pid == 0)
		bench_pong_loop(in, out);
	c0 = bench_cpu_s(pid);
	for (unsigned i = 0; i < n; i++)
		if (write(in, &one, sizeof(one)) != sizeof(one) ||
		    read(out, &v, sizeof(v)) != sizeof(v))
			goto out;
	c1 = bench_cpu_s(pid);
out:
	if (write(in, &bye, sizeof(bye)) != sizeof(bye))
		kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(in);
	close(out);
	return c1 < 0 ? -1 : (c1 - c0) / n;
}

/* ---- cache hit rate from the SIGUSR1 line ---- */

/* Counters of the daemon's SIGUSR1 stats line. */
struct gstats {
	uint64_t maps, hits, grant_maps;
};

/* maps=, cache_hits=, grant_maps= of the last stats line in the daemon's log; -1 when none. */
static int last_stats(struct xsim_daemon *dm, struct gstats *gs)
{
	char line[1024];
	FILE *f = fopen(dm->log_path, "r");
	int found = -1;

	while (f && fgets(line, sizeof(line), f)) {
		char *m = strstr(line, " maps="), *h = strstr(line, " cache_hits=");
		char *gm = strstr(line, " grant_maps=");

		if (strstr(line, "stats vcpus=") && m && h && gm) {
			gs->maps = strtoull(m + 6, NULL, 10);
			gs->hits = strtoull(h + 12, NULL, 10);
			gs->grant_maps = strtoull(gm + 12, NULL, 10);
			found++;
		}
	}
	if (f)
		fclose(f);
	return found;
}

/* SIGUSR1 and wait for the new stats line; its counters in *gs. */
static int dump_stats(struct xsim_daemon *dm, struct gstats *gs)
{
	struct gstats old;
	int before = last_stats(dm, &old);

	kill(dm->pid, SIGUSR1);
	for (int i = 0; i < 500; i++) {
		if (last_stats(dm, gs) > before)
			return 0;
		usleep(10000);
	}
	return -1;
}

/* ---- callgrind ---- */

/* Instructions the daemon executed, from start to exit, serving n requests. */
static uint64_t cg_run(unsigned n, unsigned idx, uint64_t *handler)
{
	struct rng_guest g;
	const struct bench_cg_guest cg = { &g, &g.dm, rng_start, rng_requests, rng_stop, cg_handlers };

	return bench_cg_run(&cg, "cg", n, idx, handler);
}

static void case_callgrind(bool quick)
{
	unsigned n = (unsigned)bench_env_u64("BENCH_CG_N", quick ? 300 : 2000);
	unsigned runs = quick ? 1 : 3;
	double per[3], tot[3];
	bool handler;

	if (!bench_cg_rounds("instr_per_request", n, runs, cg_run, per, tot, &handler))
		return;
	/*
	 * The fewest of the runs: extras (spurious event-channel wakeups, timers) only ever add,
	 * and how many there are depends on the machine's load. Without callgrind_annotate or the
	 * handler's symbol, the process totals stand in.
	 */
	bench_median(per, runs);
	bench_median(tot, runs);
	bench_line("instr_per_request", handler ? per[0] : tot[0], "instr", 0, false);
	bench_line("instr_per_request_process", tot[0], "instr", 0, false);
}

static void report_cache(const char *name, struct rng_guest *g, const struct gstats *s0,
			 unsigned requests)
{
	struct gstats s1;

	if (dump_stats(&g->dm, &s1) < 0 || s1.maps <= s0->maps) {
		bench_skip(name, "no stats lines from SIGUSR1");
		return;
	}
	bench_line(name, 100.0 * (double)(s1.hits - s0->hits) / (double)(s1.maps - s0->maps), "%",
		   100.0, true);
	fprintf(stderr, "# %s: %llu lookups, %llu grant maps over %u requests\n", name,
		(unsigned long long)(s1.maps - s0->maps),
		(unsigned long long)(s1.grant_maps - s0->grant_maps), requests);
	if (s1.grant_maps > s0->grant_maps)
		bench_line("grant_maps_per_request",
			   (double)(s1.grant_maps - s0->grant_maps) / requests, "maps", 0, false);
}

/* The rng guest's system calls, switches and wake-ups per request (the ioreq path). */
static void report_cost(const struct cost_snap *sum, uint64_t n, const char *why_sys)
{
	struct cost_snap zero = { 0 };
	struct cost_per_req pr;

	cost_per_request(&zero, sum, n, &pr);
	if (why_sys)
		bench_skip("syscalls_per_request_rng", why_sys);
	else
		bench_line("syscalls_per_request_rng", pr.syscalls, "syscalls", 0, false);
	bench_line("csw_per_request_rng", pr.csw, "switches", 0, false);
	bench_line("wakeups_per_request_rng", pr.wakeups, "wakeups", 0, false);
}

int main(void)
{
	bool quick = bench_quick();
	unsigned rounds = quick ? 3 : 7;
	unsigned n = (unsigned)bench_env_u64("BENCH_CPU_N", quick ? 3000 : 10000);
	double ours[MAX_ROUNDS], base[MAX_ROUNDS], gr[MAX_ROUNDS];
	struct gstats s0 = { 0 }, gs0 = { 0 };
	struct rng_guest g, gg;
	int rc = 0;

	/* The same guest twice: foreign mappings (the cache), and grant mappings (grant_usage). */
	if (rng_start(&g, "cpu", NULL, NULL) < 0 || rng_requests(&g, 200) < 0) {
		fprintf(stderr, "cpu_bench: setup failed\n");
		rng_stop(&g);
		return 1;
	}
	use_grants = true;
	if (rng_start(&gg, "cpugnt", NULL, NULL) < 0 || rng_requests(&gg, 200) < 0) {
		fprintf(stderr, "cpu_bench: setup with grants failed\n");
		rng_stop(&gg);
		rng_stop(&g);
		return 1;
	}
	use_grants = false;
	if (dump_stats(&g.dm, &s0) < 0 || dump_stats(&gg.dm, &gs0) < 0)
		fprintf(stderr, "cpu_bench: no stats line after SIGUSR1\n");
	struct cost_counters ctr;
	struct cost_snap k0, k1, ksum = { 0 };
	const char *why_sys, *why_instr;
	bool counted = cost_open(&ctr, g.dm.pid, &why_sys, &why_instr) == 0;

	for (unsigned r = 0; r < rounds && !rc; r++) {
		double c0 = bench_cpu_s(g.dm.pid), c1;

		cost_read(&ctr, &k0);
		if (rng_requests(&g, n) < 0)
			rc = 1;
		cost_read(&ctr, &k1);
		cost_add(&ksum, &k0, &k1);
		ours[r] = (bench_cpu_s(g.dm.pid) - c0) * 1e6 / n;
		base[r] = pong_cpu(n) * 1e6;
		c1 = bench_cpu_s(gg.dm.pid);
		if (rng_requests(&gg, n) < 0)
			rc = 1;
		gr[r] = (bench_cpu_s(gg.dm.pid) - c1) * 1e6 / n;
	}
	if (rc) {
		bench_skip("cpu_per_request", "an rng request failed");
	} else {
		double foreign = bench_median(ours, rounds);

		bench_line("cpu_per_request", foreign, "us", bench_median(base, rounds), false);
		/* Grants against foreign mappings of the same guest: what grant_usage costs. */
		bench_line("cpu_per_request_grants", bench_median(gr, rounds), "us", foreign, false);
		if (counted)
			report_cost(&ksum, (uint64_t)rounds * n, why_sys);
		report_cache("gmem_cache_hit_rate", &g, &s0, rounds * n);
		report_cache("gmem_cache_hit_rate_grants", &gg, &gs0, rounds * n);
	}
	cost_close(&ctr);
	rng_stop(&gg);
	rng_stop(&g);
	case_callgrind(quick);
	return rc;
}
