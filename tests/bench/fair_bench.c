/*
 * Fairness: one guest, four devices; the rng's round trip (256 bytes, the interrupt awaited) is
 * measured on vCPU 0 while the other devices are flooded from their own vCPUs:
 *   - block at full depth (vCPU 1): 64 reads of 64 KiB kept in flight on a 64 MiB image;
 *   - a kick storm on the block device (vCPU 2): QueueNotify as fast as the vCPU can write it;
 *   - console output (vCPU 3): chains of 256 descriptors on the same guest MiB, as fast as the
 *     device takes them (each is cut to 64 KiB; the log rotates at 1 MiB);
 * and, for the baseline, with all of them idle.
 *
 *   BENCH fair_rng_rtt_p50   median round trip under the floods, µs; baseline = idle median
 *   BENCH fair_rng_rtt_p99   99th percentile under the floods, µs; baseline = idle p99
 *   BENCH fair_rng_rtt_max   worst round trip under the floods, ms (the bound docs/security.md
 *                            states: a turn of the loop is bounded, so this stays in ms)
 *
 * On a small machine the guest's own flood threads compete with the daemon for the CPUs; the
 * numbers then include that scheduling, as a guest's vCPUs would on a busy dom0.
 *
 * Environment: BENCH_QUICK=1 (300 round trips instead of 2000), BENCH_FAIR_TRIPS.
 */
#include <pthread.h>
#include <sched.h>

#include "devices/device.h"
#include "devices/virtio_ring.h"
#include "tests/bench/bench_common.h"

#define MIB        (1u << 20)
#define R_NOTIFY   0x50
#define BLK_QD     64u
#define BLK_REQ    (64u * 1024)
#define RING_F     (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
		    VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))
enum { W_RNG, W_BLK, W_CON, NWIN };

struct fair {
	struct xsim_hub *hub;
	struct xsim_dom *dom;
	struct xsim_daemon dm;
	struct vdrv_mem mem;
	struct xsim_vio vio_rng, vio_blk, vio_storm, vio_con;
	struct vdrv rng, blk, storm, con;
	uint64_t rng_buf;
	uint64_t blk_hdr, blk_data, blk_st;
	uint64_t con_table;
	char img[256];
	volatile bool stop;
	uint64_t blk_done, kicks, con_kicks;
};

static int fair_start(struct fair *f)
{
	char ini[1024];
	int fd;

	f->dm.pid = -1;
	snprintf(f->img, sizeof(f->img), "%s/fair_bench.XXXXXX", bench_scratch_dir());
	fd = mkstemp(f->img);
	if (fd < 0 || ftruncate(fd, 64 * (off_t)MIB) < 0)
		return -1;
	close(fd);
	f->hub = xsim_hub_start();
	f->dom = f->hub ? xsim_dom_create(f->hub, &(struct xsim_dom_opts){
		.name = "fair", .nr_vcpus = 4, .ram_mib = 64 }) : NULL;
	if (!f->dom)
		return -1;
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = fair\ndiscovery = explicit\n\n"
		 "[rng]\nmmio = 0x%llx\nirq = %u\n\n"
		 "[block \"disk\"]\nmmio = 0x%llx\nirq = %u\npath = %s\nqueue_size = 64\n\n"
		 "[console \"hvc0\"]\nmmio = 0x%llx\nirq = %u\nlog = %s/fair.log\n"
		 "log_max_size = 1024\nlog_keep = 1\n",
		 (unsigned long long)BENCH_WIN(W_RNG), BENCH_SPI(W_RNG),
		 (unsigned long long)BENCH_WIN(W_BLK), BENCH_SPI(W_BLK), f->img,
		 (unsigned long long)BENCH_WIN(W_CON), BENCH_SPI(W_CON), xsim_hub_dir(f->hub));
	if (bench_daemon_start(f->hub, &f->dm, "fair", ini, NULL, NULL, NULL) < 0) {
		bench_dump_log(&f->dm);
		return -1;
	}
	if (xsim_vmem_init(&f->mem, f->dom, BENCH_RAM, 32u << 20, false) < 0)
		return -1;
	xsim_vio_init(&f->vio_rng, f->dom, 0, BENCH_WIN(W_RNG), BENCH_SPI(W_RNG));
	xsim_vio_init(&f->vio_blk, f->dom, 1, BENCH_WIN(W_BLK), BENCH_SPI(W_BLK));
	xsim_vio_init(&f->vio_storm, f->dom, 2, BENCH_WIN(W_BLK), BENCH_SPI(W_BLK));
	xsim_vio_init(&f->vio_con, f->dom, 3, BENCH_WIN(W_CON), BENCH_SPI(W_CON));
	if (vdrv_init(&f->rng, &f->vio_rng.io, &f->mem, RING_F, 1, 64) < 0 ||
	    vdrv_init(&f->blk, &f->vio_blk.io, &f->mem, RING_F, 1, 64) < 0 ||
	    vdrv_init(&f->con, &f->vio_con.io, &f->mem, RING_F, 2, 64) < 0)
		return -1;
	/* The kick storm shares the block device's registers, from its own vCPU. */
	f->storm = f->blk;
	f->storm.io = &f->vio_storm.io;
	f->rng_buf = vdrv_alloc(&f->mem, 256, 64, NULL);
	f->blk_hdr = vdrv_alloc(&f->mem, 16, 16, NULL);
	f->blk_st = vdrv_alloc(&f->mem, BLK_QD, 16, NULL);
	f->blk_data = vdrv_alloc(&f->mem, BLK_REQ, 4096, NULL);
	return f->rng_buf && f->blk_hdr && f->blk_st && f->blk_data ? 0 : -1;
}

static void fair_stop(struct fair *f)
{
	if (f->dm.pid > 0)
		xsim_daemon_stop(&f->dm);
	xsim_hub_stop(f->hub);
	unlink(f->img);
}

/* One rng round trip in µs, the interrupt awaited as a driver would; < 0 on timeout. */
static double rng_trip(struct fair *f)
{
	struct vdrv_buf b = { f->rng_buf, 256, true };
	double t0 = bench_now();
	uint32_t len;

	vdrv_enable_irq(&f->rng, 0);
	if (vdrv_submit(&f->rng, 0, &b, 1, false, f) < 0)
		return -1;
	vdrv_kick(&f->rng, 0);
	while (vdrv_get_used(&f->rng, 0, &len, NULL) != 1) {
		if (bench_now() - t0 > 10)
			return -1;
		if (f->vio_rng.io.wait_irq(&f->vio_rng.io, 100) > 0)
			vdrv_write32(&f->rng, 0x064, vdrv_read32(&f->rng, 0x060));
		vdrv_enable_irq(&f->rng, 0);
	}
	return (bench_now() - t0) * 1e6;
}

/* ---- the floods ---- */

static void blk_submit_read(struct fair *f, unsigned i)
{
	struct vdrv_buf b[3] = {
		{ f->blk_hdr, 16, false },
		{ f->blk_data, BLK_REQ, true },     /* every request reads into the same buffer */
		{ f->blk_st + i, 1, true },
	};
	uint8_t *hdr = vdrv_host(&f->mem, f->blk_hdr);

	memset(hdr, 0, 16);                     /* VIRTIO_BLK_T_IN at sector 0 */
	vdrv_submit(&f->blk, 0, b, 3, true, (void *)(uintptr_t)(i + 1));
}

static void *blk_flood(void *arg)
{
	struct fair *f = arg;
	uint32_t len;
	void *tok;

	for (unsigned i = 0; i < BLK_QD; i++)
		blk_submit_read(f, i);
	vdrv_kick(&f->blk, 0);
	while (!f->stop) {
		bool any = false;

		while (vdrv_get_used(&f->blk, 0, &len, &tok) == 1) {
			blk_submit_read(f, (unsigned)(uintptr_t)tok - 1);
			f->blk_done++;
			any = true;
		}
		if (any)
			vdrv_kick(&f->blk, 0);
		else
			sched_yield();
	}
	return NULL;
}

static void *kick_storm(void *arg)
{
	struct fair *f = arg;

	while (!f->stop) {
		vdrv_write32(&f->storm, R_NOTIFY, 0);
		f->kicks++;
	}
	return NULL;
}

static uint16_t avail_event(const struct vdrv_vq *vq)
{
	return __atomic_load_n((uint16_t *)(void *)&vq->used->ring[vq->num], __ATOMIC_ACQUIRE);
}

static void *con_flood(void *arg)
{
	struct fair *f = arg;
	struct vdrv_vq *vq = &f->con.vq[1];
	uint64_t ram = vdrv_alloc(&f->mem, MIB, 4096, NULL);
	struct vring_desc *t;

	f->con_table = vdrv_alloc(&f->mem, 256 * 16, 16, (void **)&t);
	for (unsigned i = 0; i < 256; i++)
		t[i] = (struct vring_desc){ htole64(ram), htole32(MIB),
					    htole16(i < 255 ? VRING_DESC_F_NEXT : 0), htole16(i + 1) };
	for (uint16_t i = 0; i < 4; i++)
		vq->desc[i] = (struct vring_desc){ htole64(f->con_table), htole32(256 * 16),
						   htole16(VRING_DESC_F_INDIRECT), 0 };
	while (!f->stop) {
		for (uint16_t i = 0; i < 4; i++) {
			vq->avail->ring[vq->avail_idx % vq->num] = htole16(i);
			vq->avail_idx++;
		}
		__atomic_store_n(&vq->avail->idx, htole16(vq->avail_idx), __ATOMIC_RELEASE);
		vdrv_kick(&f->con, 1);
		f->con_kicks++;
		/* Never more than a ring ahead: wait until the device took these. */
		while (!f->stop && le16toh(avail_event(vq)) != vq->avail_idx)
			sched_yield();
	}
	return NULL;
}

static int measure(struct fair *f, unsigned n, double *us)
{
	for (unsigned i = 0; i < n; i++) {
		us[i] = rng_trip(f);
		if (us[i] < 0)
			return -1;
	}
	return 0;
}

static double pct(const double *sorted, unsigned n, double p)
{
	unsigned i = (unsigned)(p * (n - 1) + 0.5);

	return sorted[i < n ? i : n - 1];
}

int main(void)
{
	unsigned n = (unsigned)bench_env_u64("BENCH_FAIR_TRIPS", bench_quick() ? 300 : 2000);
	double *idle = calloc(n, sizeof(double)), *busy = calloc(n, sizeof(double));
	struct fair f = { 0 };
	pthread_t th[3];
	int rc = 0;

	if (!idle || !busy || fair_start(&f) < 0) {
		bench_skip("fair_rng_rtt_p99", "cannot start the guest");
		fair_stop(&f);
		return 1;
	}
	if (measure(&f, n, idle) < 0) {
		bench_skip("fair_rng_rtt_p99", "idle rng round trip timed out");
		fair_stop(&f);
		return 1;
	}
	pthread_create(&th[0], NULL, blk_flood, &f);
	pthread_create(&th[1], NULL, kick_storm, &f);
	pthread_create(&th[2], NULL, con_flood, &f);
	rc = measure(&f, n, busy);
	f.stop = true;
	for (unsigned i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	if (rc < 0) {
		bench_skip("fair_rng_rtt_p99", "rng round trip timed out under the floods");
		fair_stop(&f);
		return 1;
	}
	qsort(idle, n, sizeof(double), bench_cmp_double);
	qsort(busy, n, sizeof(double), bench_cmp_double);
	printf("# %u round trips each; during the floods: %llu block reads of 64 KiB, %llu kicks, "
	       "%llu console kicks of 4 chains\n", n, (unsigned long long)f.blk_done,
	       (unsigned long long)f.kicks, (unsigned long long)f.con_kicks);
	bench_line("fair_rng_rtt_p50", pct(busy, n, 0.5), "us", pct(idle, n, 0.5), false);
	bench_line("fair_rng_rtt_p99", pct(busy, n, 0.99), "us", pct(idle, n, 0.99), false);
	bench_line("fair_rng_rtt_max", busy[n - 1] / 1000, "ms", idle[n - 1] / 1000, false);
	fair_stop(&f);
	free(idle);
	free(busy);
	return 0;
}
