/*
 * What one block request costs the daemon: 4 KiB random reads at queue depth 1 on an O_DIRECT
 * image (cache = none), as a Linux guest's synchronous reads would issue them: the kick is one
 * ioreq (the daemon submits to io_uring and answers), the completion comes back on the loop
 * (the chain is pushed, the interrupt raised), and the driver reads InterruptStatus and writes
 * InterruptACK: three ioreqs, one io_uring read, one interrupt per request.
 *
 *   BENCH cpu_per_request_blk       user+sys of every daemon thread (schedstat of each task in
 *                                   /proc/<pid>/task) per request, microseconds. Baseline: fio's
 *                                   CPU per I/O doing the same reads on the same file (io_uring
 *                                   engine, QD1, direct, from fio's usr_cpu + sys_cpu and its
 *                                   I/O count); ratio = baseline / value.
 *   BENCH instr_per_request_blk     instructions per request under callgrind, inclusive in the
 *                                   loop's callbacks that serve it (event channel, the notify
 *                                   fast path's ioeventfd, io_uring completion eventfd, the
 *                                   block device's idle continuation):
 *                                   (run with N requests - idle run) / N, the fewest of the runs.
 *                                   No baseline (0).
 *
 * Environment: BENCH_QUICK=1, BENCH_CPU_N (requests per round), BENCH_CG_N (requests under
 * callgrind), BENCH_NO_VALGRIND=1, BENCH_DIR (the image, default /var/tmp).
 */
#include <endian.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/wait.h>

#include "devices/blk.h"
#include "devices/device.h"
#include "tests/bench/bench_common.h"

#define IMG_MIB    64u
#define MAX_ROUNDS 7

/* The loop callbacks a block request runs in (ioreq/server.c, devices/blk.c). */
/* fp_queue_cb: a kick that came through the notify fast path's ioeventfd (the default). */
static const char *const cg_handlers[] = { "xg_evtchn_cb", "fp_queue_cb", "blk_efd_cb",
					   "blk_more_cb", NULL };

struct bguest {
	BENCH_GUEST_MEMBERS;
	struct vdrv_buf b[3];
	struct virtio_blk_outhdr *hdr;
	uint8_t *status;
	uint64_t rng;
};

static char img[256];

static int make_image(void)
{
	static char chunk[1 << 20];
	int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	memset(chunk, 0x3c, sizeof(chunk));
	for (unsigned i = 0; i < IMG_MIB; i++)
		if (pwrite(fd, chunk, sizeof(chunk), (off_t)i << 20) != (ssize_t)sizeof(chunk)) {
			close(fd);
			return -1;
		}
	fsync(fd);
	return close(fd);
}

static int bg_start(void *p, const char *tag, const char *binary,
		    const char *const *pre)
{
	struct bguest *g = p;
	char ini[512];

	memset(g, 0, sizeof(*g));
	g->dm.pid = -1;
	g->rng = 0x9e3779b97f4a7c15ull;
	g->hub = xsim_hub_start();
	g->dom = g->hub ? xsim_dom_create(g->hub, &(struct xsim_dom_opts){ .name = tag,
									 .ram_mib = 16 }) : NULL;
	if (!g->dom)
		return -1;
	snprintf(ini, sizeof(ini), "[guest]\nname = %s\ndiscovery = explicit\n\n"
		 "[block \"disk\"]\nmmio = 0x%llx\nirq = %u\npath = %s\ncache = none\n", tag,
		 (unsigned long long)BENCH_WIN(0), BENCH_SPI(0), img);
	if (bench_daemon_start(g->hub, &g->dm, tag, ini, binary, pre, "warning") < 0) {
		bench_dump_log(&g->dm);
		return -1;
	}
	xsim_vio_init(&g->vio, g->dom, 0, BENCH_WIN(0), BENCH_SPI(0));
	g->vio.timeout_ms = 60000;    /* valgrind is slow */
	if (xsim_vmem_init(&g->mem, g->dom, BENCH_RAM, 2u << 20, false) < 0 ||
	    vdrv_init(&g->drv, &g->vio.io, &g->mem, VIRTIO_BIT(VIRTIO_F_VERSION_1), 1, 64) < 0)
		return -1;
	g->b[0] = (struct vdrv_buf){ vdrv_alloc(&g->mem, 16, 16, (void **)&g->hdr), 16, false };
	g->b[1] = (struct vdrv_buf){ vdrv_alloc(&g->mem, 4096, 4096, NULL), 4096, true };
	g->b[2] = (struct vdrv_buf){ vdrv_alloc(&g->mem, 1, 1, (void **)&g->status), 1, true };
	return g->b[2].gpa ? 0 : -1;
}

static void bg_stop(void *p)
{
	struct bguest *g = p;

	if (g->dm.pid > 0)
		xsim_daemon_stop(&g->dm);
	xsim_hub_stop(g->hub);
}

static int bg_requests(void *p, unsigned n)
{
	struct bguest *g = p;

	for (unsigned i = 0; i < n; i++) {
		g->rng = g->rng * 6364136223846793005ull + 1442695040888963407ull;
		g->hdr->type = htole32(VIRTIO_BLK_T_IN);
		g->hdr->ioprio = 0;
		g->hdr->sector = htole64(((g->rng >> 20) % (IMG_MIB * 256u)) * 8);
		*g->status = 0xee;
		if (vdrv_transfer(&g->drv, 0, g->b, 3, false, 60000) < 0 ||
		    *g->status != VIRTIO_BLK_S_OK)
			return -1;
	}
	return 0;
}

/* fio's CPU seconds per I/O for the same reads; < 0 when fio is missing or failed. */
static double fio_cpu_per_io(unsigned secs)
{
	char cmd[1024], line[512];
	double usr = -1, sys = -1, runtime_ms = -1, ios = -1;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "fio --name=base --filename=%s --ioengine=io_uring --direct=1 --rw=randread "
		 "--bs=4096 --iodepth=1 --size=%uM --runtime=%u --time_based --norandommap "
		 "--randrepeat=0 --output-format=json 2>/dev/null", img, IMG_MIB, secs);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		char *v;

		if (ios < 0 && (v = strstr(line, "\"total_ios\" : ")))
			ios = strtod(v + 14, NULL);   /* the first one is the read direction's */
		else if ((v = strstr(line, "\"job_runtime\" : ")))
			runtime_ms = strtod(v + 16, NULL);
		else if ((v = strstr(line, "\"usr_cpu\" : ")))
			usr = strtod(v + 12, NULL);
		else if ((v = strstr(line, "\"sys_cpu\" : ")))
			sys = strtod(v + 12, NULL);
	}
	if (pclose(p) != 0 || usr < 0 || sys < 0 || runtime_ms <= 0 || ios <= 0)
		return -1;
	return (usr + sys) / 100.0 * runtime_ms / 1000.0 / ios;
}

static uint64_t cg_run(unsigned n, unsigned idx, uint64_t *handlers)
{
	struct bguest g;
	const struct bench_cg_guest cg = { &g, &g.dm, bg_start, bg_requests, bg_stop, cg_handlers };

	return bench_cg_run(&cg, "cgb", n, idx, handlers);
}

static void case_callgrind(bool quick)
{
	unsigned n = (unsigned)bench_env_u64("BENCH_CG_N", quick ? 300 : 2000);
	unsigned runs = quick ? 1 : 3;
	double per[3], tot[3];
	bool handler;

	/* Without callgrind_annotate the process totals stand in (per[] holds them then). */
	if (!bench_cg_rounds("instr_per_request_blk", n, runs, cg_run, per, tot, &handler))
		return;
	bench_median(per, runs);    /* sorts: the fewest first (load only adds) */
	bench_line("instr_per_request_blk", per[0], "instr", 0, false);
}

int main(void)
{
	bool quick = bench_quick();
	unsigned rounds = quick ? 1 : 3;
	unsigned n = (unsigned)bench_env_u64("BENCH_CPU_N", quick ? 1000 : 4000);
	double ours[MAX_ROUNDS], base[MAX_ROUNDS];
	struct bguest g;
	int rc = 0;

	snprintf(img, sizeof(img), "%s/xvd-cpublk-%d.img", bench_scratch_dir(), (int)getpid());
	if (make_image() < 0 || bg_start(&g, "cpublk", NULL, NULL) < 0 ||
	    bg_requests(&g, 100) < 0) {
		fprintf(stderr, "cpu_blk_bench: setup failed (image %s)\n", img);
		bench_skip("cpu_per_request_blk", "setup failed");
		bg_stop(&g);
		unlink(img);
		return 1;
	}
	for (unsigned r = 0; r < rounds && !rc; r++) {
		double c0 = bench_cpu_threads_s(g.dm.pid);

		if (bg_requests(&g, n) < 0)
			rc = 1;
		ours[r] = (bench_cpu_threads_s(g.dm.pid) - c0) * 1e6 / n;
		base[r] = fio_cpu_per_io(quick ? 1 : 2) * 1e6;
		if (base[r] < 0) {
			fprintf(stderr, "cpu_blk_bench: fio failed or missing: no baseline\n");
			base[r] = 0;
		}
	}
	if (rc)
		bench_skip("cpu_per_request_blk", "a block request failed");
	else
		bench_line("cpu_per_request_blk", bench_median(ours, rounds), "us",
			   bench_median(base, rounds), false);
	bg_stop(&g);
	case_callgrind(quick);
	unlink(img);
	return rc;
}
