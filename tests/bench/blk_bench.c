/*
 * virtio-blk benchmark: a guest driver on xensim drives the real sim daemon at a fixed queue
 * depth for a fixed time, then fio (io_uring engine) runs the same pattern on the same file with
 * the same block size, depth and cache mode as the baseline. Prints one line per case:
 *   BENCH <name> value=<v> unit=<u> baseline=<b> ratio=<r>
 *
 * The guest behaves like Linux's virtio_blk: it kicks only when the device's avail_event asks
 * for it (EVENT_IDX), re-arms used_event after draining the used ring, and reads and
 * acknowledges InterruptStatus on every interrupt.
 *
 * Environment: BENCH_DIR (where the image lives, default /var/tmp), BENCH_SECONDS (per case and
 * side, default 3), BENCH_IMG_MIB (default 256), BENCH_CACHE (none | writeback, default none),
 * BENCH_FILTER (run only cases whose name contains it; "cost" runs only the cost cases),
 * BENCH_KEEP_CG (keep the cost cases' callgrind files), BENCH_QUICK (skip the extra queue depths
 * of the random-read curve), BENCH_REPEAT (default 3: guest and fio
 * runs alternate that many times and the medians are reported, so a load change on a shared
 * machine hits both sides alike).
 *
 * The daemon runs with the INI's default notify path (auto: the privcmd ioeventfd/irqfd fast
 * path, which xensim's kernel model offers). notify_fastpath_blk_qd32 and _qd1 compare the two
 * paths in one run: the 4 KiB random read with notify_fastpath = on (value) and = off
 * (baseline), the daemon restarted for each side and the sides alternating BENCH_REPEAT times;
 * value and baseline are medians, ratio the median of the per-round ratios.
 *
 * The nbd_* cases serve the same image over NBD: nbdkit's file plugin on a unix socket, the
 * daemon's disk naming it (`nbd = nbd+unix:///?socket=...`), against fio's nbd engine (libnbd)
 * on the same export. Skipped, with a line saying so, when nbdkit or the daemon's libnbd is not
 * there.
 *
 * Ceph RBD (rbd_*): when the Ceph packages are there (tests/lib/ceph-cluster.sh available), a
 * one-node cluster is started in a temporary directory, an image of BENCH_RBD_MIB (default 128)
 * is written through, and 4 KiB random reads and writes at QD1 and QD32 run through an rbd
 * disk against fio's rbd engine on the same image (same client, same librbd defaults).
 * BENCH_RBD=0 leaves them out. The cluster's memstore OSD keeps everything in memory: these
 * numbers are the client path's, not a disk's.
 * Cost per request (bench_cost.h), for 4 KiB random reads and writes at QD1 and QD32, buffered
 * (cache = writeback) and direct (cache = none), a fixed number of requests each, the fewest of
 * BENCH_REPEAT runs (load only adds):
 *   BENCH syscalls_per_request_blk_<case>  the daemon's system calls (raw_syscalls:sys_enter)
 *   BENCH csw_per_request_blk_<case>       its context switches (voluntary and not: comment)
 *   BENCH wakeups_per_request_blk_<case>   its voluntary switches: each needed one wake-up
 *   BENCH hwinstr_per_request_blk_<case>   user+kernel instructions (only with a PMU)
 *   BENCH instr_per_request_blk_<case>     user-space instructions under callgrind, inclusive
 *                                          in the loop callbacks that serve requests
 * The baseline of a cost line is the target where it has one (syscalls <= 0.5 at QD32,
 * instructions <= 2,400 at QD32 and <= 3,000 at QD1), so ratio >= 1 is met; else 0.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devices/blk.h"
#include "devices/device.h"
#include "tests/lib/nbdkit.h"
#include "tests/bench/bench_common.h"
#include "tests/bench/bench_cost.h"
#include "tests/xensim/guest.h"

#ifndef XVD_SIM_DAEMON
#error "XVD_SIM_DAEMON must name the sim daemon binary"
#endif

#define WIN0         UINT64_C(0x02000000)
#define SPI          33
#define RAM_GPA      UINT64_C(0x40000000)
#define HEAP         (32u << 20)
#define MAX_QD       64
#define R_INT_STATUS 0x60
#define R_INT_ACK    0x64
#define R_NOTIFY     0x50

struct bcase {
	const char *name;
	const char *fio_rw;      /* randread, randwrite, read, write */
	bool write, rand;
	uint32_t bs;
	unsigned qd;
	bool depth_curve;        /* an extra point of the QD curve: skipped with BENCH_QUICK */
};

static const struct bcase cases[] = {
	{ "blk_randread_4k_qd1", "randread", false, true, 4096, 1, false },
	{ "blk_randread_4k_qd4", "randread", false, true, 4096, 4, true },
	{ "blk_randread_4k_qd8", "randread", false, true, 4096, 8, true },
	{ "blk_randread_4k_qd16", "randread", false, true, 4096, 16, true },
	{ "blk_randread_4k_qd32", "randread", false, true, 4096, 32, false },
	{ "blk_randread_4k_qd64", "randread", false, true, 4096, 64, true },
	{ "blk_randwrite_4k_qd32", "randwrite", true, true, 4096, 32, false },
	{ "blk_seqread_128k_qd8", "read", false, false, 131072, 8, false },
	{ "blk_seqwrite_128k_qd8", "write", true, false, 131072, 8, false },
};

struct slot {
	struct vdrv_buf b[3];
	struct virtio_blk_outhdr *hdr;
	uint8_t *status;
};

struct bench {
	struct xsim_hub *hub;
	struct xsim_dom *dom;
	struct xsim_daemon dm;
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	struct slot slots[MAX_QD];
	char img[256];
	char nbd_uri[320];       /* set: the disk is this NBD export of img, not img itself */
	char rbd[64], ceph_dir[256];   /* rbd cases: the image, the cluster's directory */
	uint64_t img_bytes;
	bool direct;
	double secs;
	uint64_t seq_off, rng;
	uint64_t errors, kicks, irqs;
	uint64_t limit;              /* non-zero: run_guest stops after this many requests */
	uint64_t completed;          /* run_guest's completions, the drained tail included */
	const char *const *pre;      /* non-NULL: the daemon runs under valgrind with these */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : dflt;
}

/* A fully written image, so reads hit real blocks rather than holes. */
static int make_image(struct bench *b)
{
	size_t chunk = 1u << 20;
	char *buf = malloc(chunk);
	int fd = open(b->img, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || !buf) {
		free(buf);
		return -1;
	}
	for (size_t i = 0; i < chunk; i++)
		buf[i] = (char)(i * 131 + 7);
	for (uint64_t off = 0; off < b->img_bytes; off += chunk)
		if (pwrite(fd, buf, chunk, (off_t)off) != (ssize_t)chunk) {
			close(fd);
			free(buf);
			return -1;
		}
	fsync(fd);
	close(fd);
	free(buf);
	return 0;
}

/* Start the daemon (fastpath: the notify_fastpath value, NULL for the default) and the driver. */
static int daemon_up(struct bench *b, const char *fastpath)
{
	char ini[1024], inipath[512];
	const char *args[] = { "--foreground", "--config", inipath, "--log-level", "warning",
			       NULL };
	uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
			VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
			VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE);
	FILE *f;

	char disk[400];

	snprintf(inipath, sizeof(inipath), "%s/bench.ini", xsim_hub_dir(b->hub));
	if (b->rbd[0])
		snprintf(disk, sizeof(disk), "rbd = %s\nceph_conf = %s/ceph.conf", b->rbd,
			 b->ceph_dir);
	else if (b->nbd_uri[0])
		snprintf(disk, sizeof(disk), "nbd = %s", b->nbd_uri);
	else
		snprintf(disk, sizeof(disk), "path = %s\ncache = %s", b->img,
			 b->direct ? "none" : "writeback");
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = bench\ndiscovery = explicit\n%s%s%s\n[block \"bench\"]\n"
		 "mmio = 0x02000000\nirq = 33\n%s\nqueue_size = 256\n",
		 fastpath ? "notify_fastpath = " : "", fastpath ? fastpath : "",
		 fastpath ? "\n" : "", disk);
	f = fopen(inipath, "w");
	if (!f || fputs(ini, f) < 0 || fclose(f) != 0)
		return -1;
	const char *vargs[24];
	unsigned n = 0;

	for (; b->pre && b->pre[n] && n < 16; n++)
		vargs[n] = b->pre[n];
	memcpy(&vargs[n], args, sizeof(args));
	if (xsim_daemon_start(b->hub, &b->dm, b->pre ? "/usr/bin/valgrind" : XVD_SIM_DAEMON,
			      "daemon", vargs, 0) < 0 ||
	    xsim_daemon_wait_ready(&b->dm, b->pre ? 60000 : 10000) < 0)
		return -1;
	xsim_vio_init(&b->vio, b->dom, 0, WIN0, SPI);
	if (b->pre)
		b->vio.timeout_ms = 60000;    /* valgrind is slow */
	if (xsim_vmem_init(&b->mem, b->dom, RAM_GPA, HEAP, false) < 0)
		return -1;
	/* A fresh driver: the previous daemon's device is gone with its ioreq server. */
	memset(&b->drv, 0, sizeof(b->drv));
	return vdrv_init(&b->drv, &b->vio.io, &b->mem, want, 1, 256);
}

static int bench_start(struct bench *b)
{
	b->hub = xsim_hub_start();
	b->dom = b->hub ? xsim_dom_create(b->hub, &(struct xsim_dom_opts){ .name = "bench",
									 .ram_mib = 128 }) : NULL;
	if (!b->dom)
		return -1;
	return daemon_up(b, NULL);
}

/* Per-slot request memory, allocated once: header, data (4 KiB aligned), status. */
static void slots_init(struct bench *b, uint32_t bs)
{
	b->mem.next = 0;
	/* Past the rings and the driver's tables, which vdrv_init() took from the start. */
	b->mem.next = 4u << 20;
	for (unsigned i = 0; i < MAX_QD; i++) {
		struct slot *s = &b->slots[i];
		void *h;

		s->b[0] = (struct vdrv_buf){ vdrv_alloc(&b->mem, 16, 16, (void **)&s->hdr), 16,
					     false };
		s->b[1] = (struct vdrv_buf){ vdrv_alloc(&b->mem, bs, 4096, &h), bs, false };
		s->b[2] = (struct vdrv_buf){ vdrv_alloc(&b->mem, 1, 1, (void **)&s->status), 1,
					     true };
		memset(h, 0x6b, bs);
	}
}

static uint64_t next_off(struct bench *b, const struct bcase *c)
{
	uint64_t blocks = b->img_bytes / c->bs;

	if (c->rand) {
		b->rng = b->rng * 6364136223846793005ull + 1442695040888963407ull;
		return ((b->rng >> 17) % blocks) * c->bs;
	}
	uint64_t off = b->seq_off;

	b->seq_off = (b->seq_off + c->bs) % (blocks * c->bs);
	return off;
}

static void slot_submit(struct bench *b, const struct bcase *c, struct slot *s)
{
	s->hdr->type = htole32(c->write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN);
	s->hdr->ioprio = 0;
	s->hdr->sector = htole64(next_off(b, c) / 512);
	s->b[1].write = !c->write;
	*s->status = 0xee;
	if (vdrv_submit(&b->drv, 0, s->b, 3, false, s) < 0)
		b->errors++;
}

/* Kick only when the device asked for it (EVENT_IDX avail_event), as Linux does. */
static void kick_if_needed(struct bench *b, uint16_t old)
{
	if (vdrv_kick_if_asked(&b->drv, 0, old))
		b->kicks++;
}

/* Drain the used ring, resubmitting each finished slot; returns completions. */
static unsigned reap(struct bench *b, const struct bcase *c, bool resubmit)
{
	unsigned n = 0;
	uint32_t len;
	void *tok;

	for (;;) {
		while (vdrv_get_used(&b->drv, 0, &len, &tok) > 0) {
			struct slot *s = tok;

			if (*s->status != VIRTIO_BLK_S_OK)
				b->errors++;
			n++;
			if (resubmit)
				slot_submit(b, c, s);
		}
		vdrv_enable_irq(&b->drv, 0);
		/* A completion that raced the re-arm is handled now, not after an interrupt. */
		if (__atomic_load_n(&b->drv.vq[0].used->idx, __ATOMIC_ACQUIRE) ==
		    b->drv.vq[0].last_used)
			return n;
	}
}

static double run_guest(struct bench *b, const struct bcase *c)
{
	uint64_t done = 0;
	unsigned inflight = c->qd;
	double t0, t1;
	uint16_t old = b->drv.vq[0].avail_idx;

	slots_init(b, c->bs);
	b->seq_off = 0;
	for (unsigned i = 0; i < c->qd; i++)
		slot_submit(b, c, &b->slots[i]);
	vdrv_write32(&b->drv, R_NOTIFY, 0);
	t0 = now_s();
	t1 = t0;
	while (inflight) {
		bool stop = t1 - t0 >= b->secs || (b->limit && done >= b->limit);

		if (b->vio.io.wait_irq(&b->vio.io, 1000) > 0) {
			uint32_t isr = vdrv_read32(&b->drv, R_INT_STATUS);

			if (isr)
				vdrv_write32(&b->drv, R_INT_ACK, isr);
			b->irqs++;
		}
		old = b->drv.vq[0].avail_idx;
		unsigned n = reap(b, c, !stop);

		if (stop)
			inflight -= n;
		else
			done += n;
		b->completed += n;
		if (!stop)
			kick_if_needed(b, old);
		t1 = now_s();
		if (t1 - t0 > b->secs + 10)
			break;    /* the device stopped answering; errors tell */
	}
	return (double)done / (b->limit ? t1 - t0 : b->secs);
}

/* fio's IOPS for the case, from its JSON output; < 0 when fio is missing or failed. */
static double run_fio(struct bench *b, const struct bcase *c)
{
	char cmd[1024], line[512];
	const char *key = c->write ? "\"write\" : {" : "\"read\" : {";
	double iops = -1;
	bool in = false;
	FILE *p;

	char target[400], env[300] = "";

	if (b->rbd[0]) {
		/* fio's rbd engine on the same image, as the same client. */
		const char *slash = strchr(b->rbd, '/');

		snprintf(env, sizeof(env), "CEPH_CONF=%s/ceph.conf ", b->ceph_dir);
		snprintf(target, sizeof(target), "--ioengine=rbd --clientname=admin --pool=%.*s "
			 "--rbdname=%s", (int)(slash - b->rbd), b->rbd, slash + 1);
	} else if (b->nbd_uri[0])
		snprintf(target, sizeof(target), "--ioengine=nbd '--uri=%s'", b->nbd_uri);
	else
		snprintf(target, sizeof(target), "--filename=%s --ioengine=io_uring --direct=%d",
			 b->img, b->direct);
	snprintf(cmd, sizeof(cmd),
		 "%sfio --name=base %s --rw=%s "
		 "--bs=%u --iodepth=%u --size=%llu --runtime=%g --time_based --norandommap "
		 "--randrepeat=0 --output-format=json 2>/dev/null",
		 env, target, c->fio_rw, c->bs, c->qd, (unsigned long long)b->img_bytes, b->secs);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		if (strstr(line, key))
			in = true;
		char *v = in && iops < 0 ? strstr(line, "\"iops\" : ") : NULL;

		if (v)
			iops = strtod(v + 9, NULL);
	}
	if (pclose(p) != 0)
		return -1;
	return iops;
}

/* What the guest's lines say: the cache mode and xensim's guest RAM (pinnable or not). */
static const char *ram_kind = "?", *ram_cache = "?";

static void report(const struct bcase *c, double guest_iops, double fio_iops)
{
	bool mb = c->bs >= 65536;
	double scale = mb ? c->bs / 1048576.0 : 1.0;
	double v = guest_iops * scale, base = fio_iops * scale;

	printf("BENCH %s value=%.1f unit=%s baseline=%.1f ratio=%.2f # cache=%s, guest RAM %s\n",
	       c->name, v, mb ? "MiB/s" : "iops", base, base > 0 ? v / base : 0.0, ram_cache,
	       ram_kind);
	fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The notify paths compared: 4 KiB random reads, fast path on (value) against off (baseline). */
static const struct bcase fastpath_cases[] = {
	{ "notify_fastpath_blk_qd32", "randread", false, true, 4096, 32, false },
	/* One kick and one interrupt per request: the notify path is most of the cost. */
	{ "notify_fastpath_blk_qd1", "randread", false, true, 4096, 1, false },
	/* Writes too: the fast path once lost there (71k against 85k IOPS at QD32). */
	{ "notify_fastpath_blk_write_qd32", "randwrite", true, true, 4096, 32, false },
	{ "notify_fastpath_blk_write_qd1", "randwrite", true, true, 4096, 1, false },
};

/* One case with the fast path on and off, the daemon restarted for each side, alternating. */
static int compare_fastpath(struct bench *b, const struct bcase *cp, unsigned reps)
{
	const struct bcase c = *cp;
	static const char *const modes[2] = { "off", "on" };
	double v[2][16];
	uint64_t kicks[2] = { 0, 0 }, irqs[2] = { 0, 0 };

	for (unsigned r = 0; r < reps; r++) {
		for (unsigned m = 0; m < 2; m++) {
			xsim_daemon_stop(&b->dm);
			if (daemon_up(b, modes[m]) < 0) {
				fprintf(stderr, "blk_bench: %s: daemon with notify_fastpath = %s "
					"failed\n", c.name, modes[m]);
				return 1;
			}
			b->kicks = b->irqs = 0;
			v[m][r] = run_guest(b, &c);
			kicks[m] += b->kicks;
			irqs[m] += b->irqs;
		}
	}
	fprintf(stderr, "# %s: off %llu kicks %llu interrupts, on %llu kicks %llu interrupts "
		"over %u runs each\n", c.name, (unsigned long long)kicks[0],
		(unsigned long long)irqs[0], (unsigned long long)kicks[1],
		(unsigned long long)irqs[1], reps);
	for (unsigned m = 0; m < 2; m++) {
		fprintf(stderr, "# %s: %s runs:", c.name, modes[m]);
		for (unsigned r = 0; r < reps; r++)
			fprintf(stderr, " %.0f", v[m][r]);
		fprintf(stderr, "\n");
	}
	/*
	 * The sides alternate round by round, and a QD1 round's rate moves 2-4x with the load of
	 * a shared machine: the median of the per-round ratios follows that better than a ratio
	 * of medians (as net_bench reports).
	 */
	double ratio[16];

	for (unsigned r = 0; r < reps; r++)
		ratio[r] = v[0][r] > 0 ? v[1][r] / v[0][r] : 0;
	printf("BENCH %s value=%.1f unit=iops baseline=%.1f ratio=%.2f # cache=%s, guest RAM %s\n",
	       c.name, median(v[1], reps), median(v[0], reps), median(ratio, reps), ram_cache,
	       ram_kind);
	fflush(stdout);
	return b->errors ? 1 : 0;
}

/* 4 KiB random I/O through an NBD export of the image, against fio's nbd engine on it. */
static const struct bcase nbd_cases[] = {
	{ "nbd_randread_4k_qd1", "randread", false, true, 4096, 1, false },
	{ "nbd_randread_4k_qd32", "randread", false, true, 4096, 32, false },
	{ "nbd_randwrite_4k_qd1", "randwrite", true, true, 4096, 1, false },
	{ "nbd_randwrite_4k_qd32", "randwrite", true, true, 4096, 32, false },
};

/* One case: guest and fio rounds alternating, medians reported. */
static int run_case(struct bench *b, const struct bcase *c, unsigned reps)
{
	double gv[16], fv[16];

	b->errors = b->kicks = b->irqs = 0;
	for (unsigned r = 0; r < reps; r++) {
		gv[r] = run_guest(b, c);
		fv[r] = run_fio(b, c);
	}
	if (b->errors)
		fprintf(stderr, "blk_bench: %s: %llu errors\n", c->name,
			(unsigned long long)b->errors);
	fprintf(stderr, "# %s: %llu kicks, %llu interrupts over %u runs (%s)\n", c->name,
		(unsigned long long)b->kicks, (unsigned long long)b->irqs, reps,
		b->rbd[0] ? "rbd" : b->nbd_uri[0] ? "nbdkit file plugin, unix socket" :
		b->direct ? "cache=none" : "cache=writeback");
	report(c, median(gv, reps), median(fv, reps));
	return b->errors ? 1 : 0;
}

/* The nbd_* cases: nbdkit serves the image; the daemon restarted on the export. */
static int nbd_cases_run(struct bench *b, const char *filter, unsigned reps)
{
	char sock[300], file[300];
	const char *args[] = { "file", file, NULL };
	bool want = false;
	pid_t srv;
	int rc = 0;

	for (size_t i = 0; i < sizeof(nbd_cases) / sizeof(nbd_cases[0]); i++)
		want |= !filter || strstr(nbd_cases[i].name, filter);
	if (!want)
		return 0;
	if (!nbdkit_available()) {
		fprintf(stderr, "# nbd_*: skipped: no nbdkit\n");
		return 0;
	}
	snprintf(sock, sizeof(sock), "%s/nbd.sock", xsim_hub_dir(b->hub));
	snprintf(file, sizeof(file), "file=%s", b->img);
	srv = nbdkit_spawn(sock, args, 10000);
	if (srv < 0) {
		fprintf(stderr, "blk_bench: nbdkit did not start\n");
		return 1;
	}
	snprintf(b->nbd_uri, sizeof(b->nbd_uri), "nbd+unix:///?socket=%s", sock);
	ram_cache = "nbd (nbdkit's page cache)";
	xsim_daemon_stop(&b->dm);
	if (daemon_up(b, NULL) < 0) {
		fprintf(stderr, "# nbd_*: skipped: the daemon cannot serve an NBD disk (built "
			"without libnbd?)\n");
	} else {
		for (size_t i = 0; i < sizeof(nbd_cases) / sizeof(nbd_cases[0]); i++)
			if (!filter || strstr(nbd_cases[i].name, filter))
				rc |= run_case(b, &nbd_cases[i], reps);
	}
	xsim_daemon_stop(&b->dm);
	b->nbd_uri[0] = '\0';
	nbdkit_kill(srv, sock);
	return rc;
}

/* Through an rbd disk against fio's rbd engine. */
static const struct bcase rbd_cases[] = {
	{ "rbd_randread_4k_qd1", "randread", false, true, 4096, 1, false },
	{ "rbd_randread_4k_qd32", "randread", false, true, 4096, 32, false },
	{ "rbd_randwrite_4k_qd1", "randwrite", true, true, 4096, 1, false },
	{ "rbd_randwrite_4k_qd32", "randwrite", true, true, 4096, 32, false },
};

/* system() of a printf-formatted command line. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* The rbd cases on a one-node cluster of their own; 0, or 1 when something failed. */
static int bench_rbd(struct bench *b, const char *filter, unsigned reps)
{
	uint64_t img_bytes = b->img_bytes;
	char port[16], mib[16], owner[16];
	bool any = false;
	int rc = 0;

	for (size_t i = 0; i < sizeof(rbd_cases) / sizeof(rbd_cases[0]); i++)
		any |= !filter || strstr(rbd_cases[i].name, filter);
#ifndef XVD_HAVE_RBD
	any = false;   /* built without librbd: an rbd disk cannot start */
#endif
	if (!any || env_u64("BENCH_RBD", 1) == 0)
		return 0;
	if (sh("sh %s available", CEPH_CLUSTER_SH) != 0) {
		fprintf(stderr, "# rbd cases skipped: no Ceph packages (ceph-mon ceph-osd "
			"ceph-common)\n");
		return 0;
	}
	snprintf(b->ceph_dir, sizeof(b->ceph_dir), "%s/ceph", xsim_hub_dir(b->hub));
	snprintf(port, sizeof(port), "%d", nbdkit_free_port());
	snprintf(owner, sizeof(owner), "%d", (int)getpid());
	setenv("CEPH_OWNER", owner, 1);   /* no cluster left behind should the bench die */
	snprintf(mib, sizeof(mib), "%llu", (unsigned long long)env_u64("BENCH_RBD_MIB", 128));
	snprintf(b->rbd, sizeof(b->rbd), "rbd/bench");
	if (mkdir(b->ceph_dir, 0700) < 0 ||
	    sh("sh " CEPH_CLUSTER_SH " start %s %s >/dev/null 2>&1", b->ceph_dir, port) != 0 ||
	    /* fio's client as the daemon's: no librbd cache (blk_rbd.c says why). */
	    sh("printf '[client]\\nrbd cache = false\\n' >> %s/ceph.conf", b->ceph_dir) != 0 ||
	    sh("rbd --conf %s/ceph.conf create --size %s rbd/bench", b->ceph_dir, mib) != 0 ||
	    sh("rbd --conf %s/ceph.conf bench --io-type write --io-size 4M --io-pattern seq "
	       "--io-total %sM rbd/bench >/dev/null", b->ceph_dir, mib) != 0) {
		fprintf(stderr, "blk_bench: the Ceph cluster or its image failed (%s)\n",
			b->ceph_dir);
		rc = 1;
		goto out;
	}
	b->img_bytes = env_u64("BENCH_RBD_MIB", 128) << 20;
	ram_cache = "rbd (memstore OSD)";
	xsim_daemon_stop(&b->dm);
	if (daemon_up(b, NULL) < 0) {
		fprintf(stderr, "blk_bench: the daemon with an rbd disk failed\n");
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < sizeof(rbd_cases) / sizeof(rbd_cases[0]); i++)
		if (!filter || strstr(rbd_cases[i].name, filter))
			rc |= run_case(b, &rbd_cases[i], reps);
	xsim_daemon_stop(&b->dm);
out:
	sh("sh " CEPH_CLUSTER_SH " stop %s >/dev/null 2>&1", b->ceph_dir);
	b->rbd[0] = '\0';
	b->img_bytes = img_bytes;
	return rc;
}

/* ---- cost per request: system calls, switches, wake-ups, instructions ---- */

/*
 * The cost cases: 4 KiB random reads and writes at QD1 and QD32, buffered (cache =
 * writeback) and direct (cache = none), the daemon restarted for each cache mode. The counters
 * (bench_cost.h) count the daemon's threads only: the guest's side is the vCPU's on Xen.
 */
struct ccase {
	const char *tag;           /* randread_4k_qd32_direct, ... */
	bool write, direct;
	unsigned qd;
};

static const struct ccase cost_cases[] = {
	{ "randread_4k_qd1_buffered", false, false, 1 },
	{ "randread_4k_qd32_buffered", false, false, 32 },
	{ "randwrite_4k_qd1_buffered", true, false, 1 },
	{ "randwrite_4k_qd32_buffered", true, false, 32 },
	{ "randread_4k_qd1_direct", false, true, 1 },
	{ "randread_4k_qd32_direct", false, true, 32 },
	{ "randwrite_4k_qd1_direct", true, true, 1 },
	{ "randwrite_4k_qd32_direct", true, true, 32 },
};

/* The targets: syscalls <= 0.5 at QD32, instructions <= 2,400 at QD32, 3,000 at QD1. */
static double cost_target_instr(const struct ccase *cc)
{
	return cc->qd >= 32 ? 2400 : 3000;
}

/* One cost line: value per request, baseline the target (0: none), ratio = target / value. */
static void cost_line(const char *what, const struct ccase *cc, double v, const char *unit,
		      double target, const char *note)
{
	printf("BENCH %s_per_request_blk_%s value=%.3f unit=%s baseline=%.3f ratio=%.2f # guest "
	       "RAM %s%s%s\n", what, cc->tag, v, unit, target,
	       target > 0 && v > 0 ? target / v : 0.0, ram_kind, note ? "; " : "", note ? note : "");
	fflush(stdout);
}

static void cost_skip(const char *what, const struct ccase *cc, const char *why)
{
	char name[128];

	snprintf(name, sizeof(name), "%s_per_request_blk_%s", what, cc->tag);
	bench_skip(name, why);
}

/*
 * Buffered cases measure requests served from the page cache (the "buffered I/O from
 * the page cache"): the image is read through first, since the O_DIRECT cases before dropped it.
 */
static void cost_warm_cache(const struct bench *b)
{
	static char buf[1 << 20];
	int fd = open(b->img, O_RDONLY | O_CLOEXEC);

	while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
		;
	if (fd >= 0)
		close(fd);
}

static int cost_daemon(struct bench *b, bool direct)
{
	xsim_daemon_stop(&b->dm);
	b->direct = direct;
	if (daemon_up(b, NULL) < 0) {
		fprintf(stderr, "blk_bench: cost: daemon (cache=%s) failed\n",
			direct ? "none" : "writeback");
		xsim_daemon_dump_log(&b->dm, "  | ");
		return -1;
	}
	return 0;
}

/* n requests of cc on a running daemon; the completions (tail included), 0 on failure. */
static uint64_t cost_run(struct bench *b, const struct ccase *cc, uint64_t n)
{
	struct bcase c = { cc->tag, cc->write ? "randwrite" : "randread", cc->write, true, 4096,
			   cc->qd, false };
	double secs = b->secs;

	b->limit = n;
	b->completed = 0;
	b->secs = 600;
	b->errors = 0;
	run_guest(b, &c);
	b->secs = secs;
	b->limit = 0;
	return b->errors ? 0 : b->completed;
}

/* The counters' figures of cc, the fewest over reps runs (load only adds switches). */
static int cost_counts(struct bench *b, const struct ccase *cc, unsigned reps)
{
	uint64_t n = cc->qd >= 32 ? 20000 : 4000;
	struct cost_per_req best = { 0 }, one;
	struct cost_counters ctr;
	const char *why_sys, *why_instr;
	char note[160];

	if (cost_run(b, cc, 200) == 0)     /* warm: page cache, io_uring workers, mappings */
		return -1;
	if (cost_open(&ctr, b->dm.pid, &why_sys, &why_instr) < 0)
		return -1;
	for (unsigned r = 0; r < reps; r++) {
		struct cost_snap s0, s1;
		uint64_t done;

		cost_read(&ctr, &s0);
		done = cost_run(b, cc, n);
		cost_read(&ctr, &s1);
		if (!done) {
			cost_close(&ctr);
			return -1;
		}
		cost_per_request(&s0, &s1, done, &one);
		if (r == 0 || one.syscalls + one.csw < best.syscalls + best.csw)
			best = one;
	}
	cost_close(&ctr);
	if (why_sys)
		cost_skip("syscalls", cc, why_sys);
	else
		cost_line("syscalls", cc, best.syscalls, "syscalls", cc->qd >= 32 ? 0.5 : 0, NULL);
	snprintf(note, sizeof(note), "voluntary (wake-ups) %.3f, involuntary %.3f; %u iou-wrk "
		 "threads alive after", best.wakeups, best.invol, best.workers_max);
	cost_line("csw", cc, best.csw, "switches", 0, note);
	cost_line("wakeups", cc, best.wakeups, "wakeups", 0, NULL);
	if (!why_instr)
		cost_line("hwinstr", cc, best.instr, "instr", cost_target_instr(cc),
			  "user+kernel, perf");
	return 0;
}

/*
 * Instructions per request under callgrind (user space only: the kernel's share is not seen),
 * inclusive in the loop callbacks that serve requests: (n requests - none) / n.
 */
static const char *const cost_cg_handlers[] = { "xg_evtchn_cb", "fp_queue_cb", "blk_efd_cb",
						"blk_more_cb", NULL };

static uint64_t cost_cg_one(struct bench *b, const struct ccase *cc, uint64_t n)
{
	char out[512], opt[600];
	const char *pre[] = { "--tool=callgrind", opt, XVD_SIM_DAEMON, NULL };
	uint64_t v = 0;

	snprintf(out, sizeof(out), "%s/xvd-blkcost-%d-%s-%s.out", bench_scratch_dir(),
		 (int)getpid(), cc->tag, n ? "busy" : "idle");
	snprintf(opt, sizeof(opt), "--callgrind-out-file=%s", out);
	xsim_daemon_stop(&b->dm);
	b->pre = pre;
	b->direct = cc->direct;
	setenv("XVD_NO_SECCOMP", "1", 1);    /* valgrind does not know seccomp(2) */
	int up = daemon_up(b, NULL);

	unsetenv("XVD_NO_SECCOMP");
	b->pre = NULL;
	if (up == 0 && (n == 0 || cost_run(b, cc, n) > 0)) {
		int st = xsim_daemon_stop(&b->dm);

		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			v = bench_cg_inclusive(out, cost_cg_handlers);
	}
	if (!v)
		xsim_daemon_dump_log(&b->dm, "  | ");
	b->dm.pid = -1;
	if (getenv("BENCH_KEEP_CG"))
		fprintf(stderr, "# kept %s\n", out);
	else
		unlink(out);
	return v;
}

static void cost_callgrind(struct bench *b, const struct ccase *cc)
{
	uint64_t n = cc->qd >= 32 ? 4000 : 1000;
	uint64_t idle, busy;

	if (bench_env_u64("BENCH_NO_VALGRIND", 0) || access("/usr/bin/valgrind", X_OK) != 0) {
		cost_skip("instr", cc, "valgrind not available or disabled");
		return;
	}
	if (!cc->direct)
		cost_warm_cache(b);
	idle = cost_cg_one(b, cc, 0);
	busy = idle ? cost_cg_one(b, cc, n) : 0;
	if (!busy || busy < idle) {
		cost_skip("instr", cc, "a callgrind run failed");
		return;
	}
	cost_line("instr", cc, (double)(busy - idle) / (double)n, "instr",
		  cost_target_instr(cc), "user space only (callgrind), the serving callbacks");
}

static int cost_cases_run(struct bench *b, const char *filter, unsigned reps)
{
	bool direct = b->direct;
	int rc = 0;

	for (unsigned m = 0; m < 2 && !rc; m++) {
		bool want_direct = m == 1, up = false;

		for (size_t i = 0; i < sizeof(cost_cases) / sizeof(cost_cases[0]) && !rc; i++) {
			const struct ccase *cc = &cost_cases[i];

			if (cc->direct != want_direct || (filter && !strstr(cc->tag, filter) &&
							  !strstr("cost", filter)))
				continue;
			if (!up && cost_daemon(b, want_direct) < 0)
				return 1;
			up = true;
			if (!cc->direct)
				cost_warm_cache(b);
			if (cost_counts(b, cc, reps) < 0) {
				fprintf(stderr, "blk_bench: cost %s failed\n", cc->tag);
				rc = 1;
			}
		}
	}
	for (size_t i = 0; i < sizeof(cost_cases) / sizeof(cost_cases[0]) && !rc; i++) {
		const struct ccase *cc = &cost_cases[i];

		if (filter && !strstr(cc->tag, filter) && !strstr("cost", filter))
			continue;
		cost_callgrind(b, cc);
	}
	b->direct = direct;
	if (cost_daemon(b, direct) < 0)
		rc = 1;
	return rc;
}

int main(void)
{
	struct bench *b = calloc(1, sizeof(*b));
	const char *dir = getenv("BENCH_DIR"), *filter = getenv("BENCH_FILTER");
	const char *cache = getenv("BENCH_CACHE");
	bool quick = env_u64("BENCH_QUICK", 0) != 0;
	unsigned reps = (unsigned)env_u64("BENCH_REPEAT", 3);
	int rc = 0;

	if (reps < 1 || reps > 16)
		reps = 3;

	b->secs = (double)env_u64("BENCH_SECONDS", 3);
	b->img_bytes = env_u64("BENCH_IMG_MIB", 256) << 20;
	b->direct = !cache || strcmp(cache, "writeback") != 0;
	b->rng = 0x853c49e6748fea9bull;
	snprintf(b->img, sizeof(b->img), "%s/xvd-bench-%d.img", dir ? dir : "/var/tmp",
		 (int)getpid());
	if (make_image(b) < 0 || bench_start(b) < 0) {
		fprintf(stderr, "blk_bench: setup failed (image %s)\n", b->img);
		unlink(b->img);
		return 1;
	}
	ram_kind = xsim_dom_ram_kind(b->dom);
	ram_cache = b->direct ? "none" : "writeback";
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bcase *c = &cases[i];

		if ((filter && !strstr(c->name, filter)) || (quick && c->depth_curve))
			continue;
		rc |= run_case(b, c, reps);
	}
	for (size_t i = 0; i < sizeof(fastpath_cases) / sizeof(fastpath_cases[0]); i++) {
		b->errors = 0;
		if (!filter || strstr(fastpath_cases[i].name, filter))
			rc |= compare_fastpath(b, &fastpath_cases[i], reps);
	}
	rc |= nbd_cases_run(b, filter, reps);
	rc |= bench_rbd(b, filter, reps);
	rc |= cost_cases_run(b, filter, reps);
	xsim_daemon_stop(&b->dm);
	xsim_hub_stop(b->hub);
	unlink(b->img);
	free(b);
	return rc;
}
