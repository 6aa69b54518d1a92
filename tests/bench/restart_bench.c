/*
 * Restart benchmark (issue 22): the pause a guest sees when its xen-virtiod is restarted. A
 * guest driver on xensim (its own thread) reads 4 KiB blocks at random at QD1: one request out,
 * a kick, the completion waited for by interrupt, the next one. Meanwhile the operator (the main
 * thread) ends the daemon at a random moment and starts it again as a supervisor would, on the
 * same command line and state directory, waiting for READY=1. Kinds of round, alternating:
 *   kill          SIGKILL; restarted with the fd store kept (systemd: Restart=on-failure,
 *                 FileDescriptorStoreMax=)
 *   kill_nostore  SIGKILL; restarted with an empty fd store (no systemd, as in the e2e's busybox
 *                 dom0: the new instance binds the event channel ports again)
 *   term          SIGTERM, the handover of `systemctl restart`; fd store kept
 *   none          nothing happens: the baseline, a window as long as the last restart's
 * A round's pause is the longest gap between two consecutive completions around it (the later
 * completion after the signal, the earlier one before READY=1 plus 20 ms): what the guest saw.
 * Lines:
 *   BENCH restart_pause_<kind>_blk_qd1 value=<median pause, ms> unit=ms
 *         baseline=<median longest gap of the "none" rounds, ms>  # min, max, signal-to-READY
 *   BENCH restart_pause_none_blk_qd1 value=<that baseline> baseline=<median gap between any
 *         two completions, ms>
 *
 * Environment: BENCH_RESTART_ROUNDS (rounds of each kind, default 10; 5 with BENCH_QUICK),
 * BENCH_DIR (the image's directory, default /var/tmp).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devices/blk.h"
#include "devices/device.h"
#include "tests/bench/bench_common.h"

#define HEAP        (8u << 20)
#define IMG_BYTES   (16u << 20)
#define R_INT_STATUS 0x60
#define R_INT_ACK    0x64
#define WAIT_MS     30000
#define MAX_ROUNDS  50
#define MARGIN_S    0.020

enum kind { K_KILL, K_KILL_NOSTORE, K_TERM, K_NONE, NKINDS };
static const char *const kind_name[NKINDS] = { "kill", "kill_nostore", "term", "none" };

struct round {
	enum kind kind;
	double t_signal, t_ready;
};

struct rb {
	BENCH_GUEST_MEMBERS;
	char img[256], ini[512];
	const char *args[8];
	/* the guest's completions, in order; written by the guest thread until stop */
	double *done;
	size_t ndone, cap;
	atomic_bool stop;
	unsigned errors;
	const char *guest_err;
};

static int make_image(const char *path)
{
	static char buf[1 << 16];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 131 + 7);
	for (unsigned off = 0; off < IMG_BYTES; off += sizeof(buf))
		if (pwrite(fd, buf, sizeof(buf), off) != (ssize_t)sizeof(buf)) {
			close(fd);
			return -1;
		}
	return close(fd);
}

static void *guest_main(void *arg)
{
	struct rb *b = arg;
	struct virtio_blk_outhdr *hdr;
	uint8_t *status, *data;
	struct vdrv_buf bufs[3];
	uint64_t rng = 88172645463325252ull;

	b->mem.next = 4u << 20;  /* past the rings vdrv_init() allocated */
	bufs[0] = (struct vdrv_buf){ vdrv_alloc(&b->mem, 16, 16, (void **)&hdr), 16, false };
	bufs[1] = (struct vdrv_buf){ vdrv_alloc(&b->mem, 4096, 4096, (void **)&data), 4096, true };
	bufs[2] = (struct vdrv_buf){ vdrv_alloc(&b->mem, 1, 1, (void **)&status), 1, true };
	while (!atomic_load(&b->stop)) {
		double deadline = bench_now() + WAIT_MS / 1000.0;
		uint32_t len;
		void *tok;

		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		hdr->type = htole32(VIRTIO_BLK_T_IN);
		hdr->ioprio = 0;
		hdr->sector = htole64((rng % (IMG_BYTES / 4096)) * 8);
		*status = 0xee;
		if (vdrv_submit(&b->drv, 0, bufs, 3, false, hdr) < 0) {
			b->guest_err = "the ring is full at QD1";
			break;
		}
		vdrv_kick(&b->drv, 0);
		while (vdrv_get_used(&b->drv, 0, &len, &tok) == 0) {
			vdrv_enable_irq(&b->drv, 0);
			if (vdrv_get_used(&b->drv, 0, &len, &tok) > 0)
				break;
			if (b->vio.io.wait_irq(&b->vio.io, 20) > 0) {
				uint32_t isr = vdrv_read32(&b->drv, R_INT_STATUS);

				if (isr)
					vdrv_write32(&b->drv, R_INT_ACK, isr);
			}
			if (bench_now() > deadline) {
				b->guest_err = "no completion for 30 s";
				atomic_store(&b->stop, true);
				return NULL;
			}
		}
		if (tok != hdr || *status != VIRTIO_BLK_S_OK)
			b->errors++;
		if (b->ndone == b->cap) {
			size_t cap = b->cap ? b->cap * 2 : 1 << 16;
			double *d = realloc(b->done, cap * sizeof(*d));

			if (!d) {
				b->guest_err = "out of memory";
				break;
			}
			b->done = d, b->cap = cap;
		}
		b->done[b->ndone++] = bench_now();
	}
	atomic_store(&b->stop, true);
	return NULL;
}

/* One restart of the given kind; fills r. 0, or -1 (the daemon did not come back). */
static int restart_once(struct rb *b, enum kind k, double none_len, struct round *r)
{
	int st;

	r->kind = k;
	r->t_signal = bench_now();
	if (k == K_NONE) {
		struct timespec ts = { (time_t)none_len, (long)((none_len - (long)none_len) * 1e9) };

		nanosleep(&ts, NULL);
		r->t_ready = bench_now();
		return 0;
	}
	kill(b->dm.pid, k == K_TERM ? SIGTERM : SIGKILL);
	if (xsim_daemon_wait_exit(&b->dm, 10000, &st) < 0)
		return -1;
	if (k == K_KILL_NOSTORE) {
		xsim_daemon_store_count(&b->dm);
		while (b->dm.nstore)
			close(b->dm.store[--b->dm.nstore].fd);
	}
	if (xsim_daemon_restart(b->hub, &b->dm, XVD_SIM_DAEMON, "daemon", b->args, 0) < 0 ||
	    xsim_daemon_wait_ready(&b->dm, BENCH_READY_MS) < 0)
		return -1;
	r->t_ready = bench_now();
	return 0;
}

/* From READY=1 to the guest's next completion, ms (-1: none). */
static double round_resume(const struct rb *b, const struct round *r)
{
	for (size_t i = 0; i < b->ndone; i++)
		if (b->done[i] >= r->t_ready)
			return (b->done[i] - r->t_ready) * 1000;
	return -1;
}

/* The longest gap between consecutive completions that overlaps [r->t_signal, t_ready + margin]. */
static double round_pause(const struct rb *b, const struct round *r)
{
	double worst = 0;

	for (size_t i = 1; i < b->ndone; i++) {
		if (b->done[i] < r->t_signal)
			continue;
		if (b->done[i - 1] > r->t_ready + MARGIN_S)
			break;
		if (b->done[i] - b->done[i - 1] > worst)
			worst = b->done[i] - b->done[i - 1];
	}
	return worst * 1000;
}

static void report(const struct rb *b, const struct round *rs, unsigned n)
{
	double pause[NKINDS][MAX_ROUNDS], ready[NKINDS][MAX_ROUNDS], resume[NKINDS][MAX_ROUNDS];
	double *gaps;
	unsigned cnt[NKINDS] = { 0 };
	double base, all;

	for (unsigned i = 0; i < n; i++) {
		enum kind k = rs[i].kind;

		pause[k][cnt[k]] = round_pause(b, &rs[i]);
		resume[k][cnt[k]] = round_resume(b, &rs[i]);
		ready[k][cnt[k]++] = (rs[i].t_ready - rs[i].t_signal) * 1000;
	}
	gaps = malloc((b->ndone ? b->ndone : 1) * sizeof(*gaps));
	for (size_t i = 1; gaps && i < b->ndone; i++)
		gaps[i - 1] = (b->done[i] - b->done[i - 1]) * 1000;
	all = gaps && b->ndone > 1 ? bench_median(gaps, (unsigned)(b->ndone - 1)) : 0;
	free(gaps);
	base = bench_median(pause[K_NONE], cnt[K_NONE]);
	for (unsigned k = 0; k < K_NONE; k++) {
		if (!cnt[k] || !cnt[K_NONE])
			continue;
		double med = bench_median(pause[k], cnt[k]);
		double rmed = bench_median(ready[k], cnt[k]);
		double cmed = bench_median(resume[k], cnt[k]);

		printf("BENCH restart_pause_%s_blk_qd1 value=%.3f unit=ms baseline=%.3f ratio=%.2f "
		       "# %u rounds, min %.3f ms, max %.3f ms; signal to READY median %.3f ms, "
		       "max %.3f ms; READY to the next completion median %.3f ms, max %.3f ms\n",
		       kind_name[k], med, base, med > 0 ? base / med : 0, cnt[k], pause[k][0],
		       pause[k][cnt[k] - 1], rmed, ready[k][cnt[k] - 1], cmed,
		       resume[k][cnt[k] - 1]);
	}
	if (!cnt[K_NONE])
		return;
	printf("BENCH restart_pause_none_blk_qd1 value=%.3f unit=ms baseline=%.3f ratio=%.2f "
	       "# %u rounds without a restart, longest gap min %.3f ms, max %.3f ms; baseline: "
	       "median gap between any two of the %zu completions\n", base, all,
	       base > 0 ? all / base : 0, cnt[K_NONE], pause[K_NONE][0],
	       pause[K_NONE][cnt[K_NONE] - 1], b->ndone);
	fflush(stdout);
}

int main(void)
{
	static struct rb b;
	static struct round rs[NKINDS * MAX_ROUNDS];
	unsigned rounds = (unsigned)bench_env_u64("BENCH_RESTART_ROUNDS", bench_quick() ? 5 : 10);
	uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
			VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE);
	double last_len = 0.05;
	unsigned n = 0, seed = (unsigned)time(NULL);
	pthread_t guest;
	char ini[1024];
	int rc = 1;

	if (rounds < 1 || rounds > MAX_ROUNDS)
		rounds = 10;
	signal(SIGPIPE, SIG_IGN);
	snprintf(b.img, sizeof(b.img), "%s/xvd-restart-bench.%d.img", bench_scratch_dir(),
		 (int)getpid());
	if (make_image(b.img) < 0) {
		bench_skip("restart_pause_kill_blk_qd1", "cannot write the image");
		return 0;
	}
	b.hub = xsim_hub_start();
	b.dom = b.hub ? xsim_dom_create(b.hub, &(struct xsim_dom_opts){ .name = "rb",
									 .ram_mib = 64 }) : NULL;
	if (!b.dom)
		goto out;
	snprintf(ini, sizeof(ini), "[guest]\nname = rb\ndiscovery = explicit\n\n"
		 "[block \"vda\"]\nmmio = 0x02000000\nirq = 33\npath = %s\nqueue_size = 64\n",
		 b.img);
	snprintf(b.ini, sizeof(b.ini), "%s/rb.ini", xsim_hub_dir(b.hub));
	b.args[0] = "--foreground", b.args[1] = "--config", b.args[2] = b.ini;
	b.args[3] = "--log-level", b.args[4] = "warning", b.args[5] = NULL;
	if (bench_write_file(b.ini, ini) < 0 ||
	    xsim_daemon_start(b.hub, &b.dm, XVD_SIM_DAEMON, "daemon", b.args, 0) < 0 ||
	    xsim_daemon_wait_ready(&b.dm, BENCH_READY_MS) < 0) {
		bench_dump_log(&b.dm);
		goto out;
	}
	xsim_vio_init(&b.vio, b.dom, 0, BENCH_WIN(0), BENCH_SPI(0));
	b.vio.timeout_ms = WAIT_MS;
	if (xsim_vmem_init(&b.mem, b.dom, BENCH_RAM, HEAP, false) < 0 ||
	    vdrv_init(&b.drv, &b.vio.io, &b.mem, want, 1, 64) < 0 ||
	    pthread_create(&guest, NULL, guest_main, &b) != 0)
		goto out;
	/* Kinds alternate (kill, kill_nostore, term, none, kill, ...): load changes hit all. */
	for (unsigned i = 0; i < rounds * NKINDS && !atomic_load(&b.stop); i++) {
		struct timespec gap;

		seed = seed * 1103515245u + 12345u;
		gap = (struct timespec){ 0, (long)(150 + (seed >> 8) % 201) * 1000000L };
		nanosleep(&gap, NULL);  /* 150 to 350 ms: the moment is the test's input */
		if (restart_once(&b, (enum kind)(i % NKINDS), last_len, &rs[n]) < 0) {
			fprintf(stderr, "restart_bench: round %u (%s): the daemon did not come back\n",
				i, kind_name[i % NKINDS]);
			bench_dump_log(&b.dm);
			break;
		}
		if (rs[n].kind != K_NONE)
			last_len = rs[n].t_ready - rs[n].t_signal;
		n++;
	}
	/* Let the guest complete a few reads after the last round. */
	nanosleep(&(struct timespec){ 0, 100000000L }, NULL);
	atomic_store(&b.stop, true);
	pthread_join(guest, NULL);
	if (b.guest_err || b.errors || n < rounds * NKINDS) {
		fprintf(stderr, "restart_bench: %s; %u errors, %u of %u rounds\n",
			b.guest_err ? b.guest_err : "guest ok", b.errors, n, rounds * NKINDS);
		goto out;
	}
	report(&b, rs, n);
	rc = 0;
out:
	if (rc)
		bench_skip("restart_pause_kill_blk_qd1", "the run failed (stderr)");
	if (b.hub) {
		xsim_daemon_stop(&b.dm);
		xsim_hub_stop(b.hub);
	}
	unlink(b.img);
	free(b.done);
	return rc;
}
