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
 * BENCH_FILTER (run only cases whose name contains it), BENCH_QUICK (skip the extra queue depths
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
 * Ceph RBD (rbd_*): when the Ceph packages are there (tests/lib/ceph-cluster.sh available), a
 * one-node cluster is started in a temporary directory, an image of BENCH_RBD_MIB (default 128)
 * is written through, and 4 KiB random reads and writes at QD1 and QD32 run through an rbd
 * disk against fio's rbd engine on the same image (same client, same librbd defaults).
 * BENCH_RBD=0 leaves them out. The cluster's memstore OSD keeps everything in memory: these
 * numbers are the client path's, not a disk's.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
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
	char rbd[64], ceph_dir[256];   /* rbd cases: the image, the cluster's directory */
	uint64_t img_bytes;
	bool direct;
	double secs;
	uint64_t seq_off, rng;
	uint64_t errors, kicks, irqs;
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

	snprintf(inipath, sizeof(inipath), "%s/bench.ini", xsim_hub_dir(b->hub));
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = bench\ndiscovery = explicit\n%s%s%s\n[block \"bench\"]\n"
		 "mmio = 0x02000000\nirq = 33\nqueue_size = 256\n",
		 fastpath ? "notify_fastpath = " : "", fastpath ? fastpath : "",
		 fastpath ? "\n" : "");
	if (b->rbd[0])
		snprintf(ini + strlen(ini), sizeof(ini) - strlen(ini),
			 "rbd = %s\nceph_conf = %s/ceph.conf\n", b->rbd, b->ceph_dir);
	else
		snprintf(ini + strlen(ini), sizeof(ini) - strlen(ini), "path = %s\ncache = %s\n",
			 b->img, b->direct ? "none" : "writeback");
	f = fopen(inipath, "w");
	if (!f || fputs(ini, f) < 0 || fclose(f) != 0)
		return -1;
	if (xsim_daemon_start(b->hub, &b->dm, XVD_SIM_DAEMON, "daemon", args, 0) < 0 ||
	    xsim_daemon_wait_ready(&b->dm, 10000) < 0)
		return -1;
	xsim_vio_init(&b->vio, b->dom, 0, WIN0, SPI);
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
	struct vdrv_vq *vq = &b->drv.vq[0];
	uint16_t event;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	event = __atomic_load_n(&vring_avail_event(vq->used, vq->num), __ATOMIC_RELAXED);
	if (vring_need_event(le16toh(event), vq->avail_idx, old)) {
		vdrv_write32(&b->drv, R_NOTIFY, 0);
		b->kicks++;
	}
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
		bool stop = t1 - t0 >= b->secs;

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
		if (!stop)
			kick_if_needed(b, old);
		t1 = now_s();
		if (t1 - t0 > b->secs + 10)
			break;    /* the device stopped answering; errors tell */
	}
	return (double)done / b->secs;
}

/* fio's IOPS for the case, from its JSON output; < 0 when fio is missing or failed. */
static double fio_iops(const char *cmd, const struct bcase *c)
{
	char line[512];
	const char *key = c->write ? "\"write\" : {" : "\"read\" : {";
	double iops = -1;
	bool in = false;
	FILE *p = popen(cmd, "r");

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

static double run_fio(struct bench *b, const struct bcase *c)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd),
		 "fio --name=base --filename=%s --ioengine=io_uring --direct=%d --rw=%s "
		 "--bs=%u --iodepth=%u --size=%llu --runtime=%g --time_based --norandommap "
		 "--randrepeat=0 --output-format=json 2>/dev/null",
		 b->img, b->direct, c->fio_rw, c->bs, c->qd, (unsigned long long)b->img_bytes,
		 b->secs);
	return fio_iops(cmd, c);
}

/* fio's rbd engine on the same image, as the same client (CEPH_CONF names the cluster). */
static double run_fio_rbd(struct bench *b, const struct bcase *c)
{
	char cmd[1024];
	const char *slash = strchr(b->rbd, '/');

	snprintf(cmd, sizeof(cmd),
		 "CEPH_CONF=%s/ceph.conf fio --name=base --ioengine=rbd --clientname=admin "
		 "--pool=%.*s --rbdname=%s --rw=%s --bs=%u --iodepth=%u --size=%llu --runtime=%g "
		 "--time_based --norandommap --randrepeat=0 --output-format=json 2>/dev/null",
		 b->ceph_dir, (int)(slash - b->rbd), b->rbd, slash + 1, c->fio_rw, c->bs, c->qd,
		 (unsigned long long)b->img_bytes, b->secs);
	return fio_iops(cmd, c);
}

static void report(const struct bcase *c, double guest_iops, double fio_iops)
{
	bool mb = c->bs >= 65536;
	double scale = mb ? c->bs / 1048576.0 : 1.0;
	double v = guest_iops * scale, base = fio_iops * scale;

	printf("BENCH %s value=%.1f unit=%s baseline=%.1f ratio=%.2f\n", c->name, v,
	       mb ? "MiB/s" : "iops", base, base > 0 ? v / base : 0.0);
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
	printf("BENCH %s value=%.1f unit=iops baseline=%.1f ratio=%.2f\n", c.name,
	       median(v[1], reps), median(v[0], reps), median(ratio, reps));
	fflush(stdout);
	return b->errors ? 1 : 0;
}

/* Through an rbd disk against fio's rbd engine. */
static const struct bcase rbd_cases[] = {
	{ "rbd_randread_4k_qd1", "randread", false, true, 4096, 1, false },
	{ "rbd_randread_4k_qd32", "randread", false, true, 4096, 32, false },
	{ "rbd_randwrite_4k_qd1", "randwrite", true, true, 4096, 1, false },
	{ "rbd_randwrite_4k_qd32", "randwrite", true, true, 4096, 32, false },
};

/* One case, guest and baseline alternating reps times; medians reported. */
static int run_case(struct bench *b, const struct bcase *c, unsigned reps,
		    double (*baseline)(struct bench *b, const struct bcase *c))
{
	double gv[16], fv[16];

	b->errors = b->kicks = b->irqs = 0;
	for (unsigned r = 0; r < reps; r++) {
		gv[r] = run_guest(b, c);
		fv[r] = baseline(b, c);
	}
	fprintf(stderr, "# %s: %llu kicks, %llu interrupts over %u runs (%s)\n", c->name,
		(unsigned long long)b->kicks, (unsigned long long)b->irqs, reps,
		b->rbd[0] ? "rbd" : b->direct ? "cache=none" : "cache=writeback");
	report(c, median(gv, reps), median(fv, reps));
	if (!b->errors)
		return 0;
	fprintf(stderr, "blk_bench: %s: %llu errors\n", c->name, (unsigned long long)b->errors);
	return 1;
}

static int sh(const char *fmt, const char *a, const char *b2)
{
	char cmd[768];

	snprintf(cmd, sizeof(cmd), fmt, a, b2);
	return system(cmd);
}

/* The rbd cases on a one-node cluster of their own; 0, or 1 when something failed. */
static int bench_rbd(struct bench *b, const char *filter, unsigned reps)
{
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
	if (sh("sh %s available%s", CEPH_CLUSTER_SH, "") != 0) {
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
	    sh("rbd --conf %s/ceph.conf create --size %s rbd/bench", b->ceph_dir, mib) != 0 ||
	    sh("rbd --conf %s/ceph.conf bench --io-type write --io-size 4M --io-pattern seq "
	       "--io-total %sM rbd/bench >/dev/null", b->ceph_dir, mib) != 0) {
		fprintf(stderr, "blk_bench: the Ceph cluster or its image failed (%s)\n",
			b->ceph_dir);
		rc = 1;
		goto out;
	}
	b->img_bytes = env_u64("BENCH_RBD_MIB", 128) << 20;
	xsim_daemon_stop(&b->dm);
	if (daemon_up(b, NULL) < 0) {
		fprintf(stderr, "blk_bench: the daemon with an rbd disk failed\n");
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < sizeof(rbd_cases) / sizeof(rbd_cases[0]); i++)
		if (!filter || strstr(rbd_cases[i].name, filter))
			rc |= run_case(b, &rbd_cases[i], reps, run_fio_rbd);
	xsim_daemon_stop(&b->dm);
out:
	sh("sh " CEPH_CLUSTER_SH " stop %s%s >/dev/null 2>&1", b->ceph_dir, "");
	b->rbd[0] = '\0';
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
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bcase *c = &cases[i];

		if ((filter && !strstr(c->name, filter)) || (quick && c->depth_curve))
			continue;
		rc |= run_case(b, c, reps, run_fio);
	}
	for (size_t i = 0; i < sizeof(fastpath_cases) / sizeof(fastpath_cases[0]); i++) {
		b->errors = 0;
		if (!filter || strstr(fastpath_cases[i].name, filter))
			rc |= compare_fastpath(b, &fastpath_cases[i], reps);
	}
	rc |= bench_rbd(b, filter, reps);
	xsim_daemon_stop(&b->dm);
	xsim_hub_stop(b->hub);
	unlink(b->img);
	free(b);
	return rc;
}
