/*
 * virtio-console throughput, guest to socket: the guest transmits on port 0 (transmit queue 1)
 * in 4 KiB buffers, up to `qd` in flight, and a client attached to the console socket reads
 * everything. Baseline: the same bytes, in the same 4 KiB writes, through a raw unix stream
 * socket pair between two threads. Rounds alternate ours and baseline; medians are reported.
 *
 *   BENCH console_tx_4k_qd16  MiB/s delivered to the client; ratio = ours / raw
 *   BENCH console_tx_4k_qd1   one buffer at a time (Linux's hvc0 writes wait for each buffer)
 *
 * The console never blocks the guest: output the client cannot take now goes to a ring and the
 * oldest bytes are dropped when it is full (the daemon runs with ring = 1024 KiB here). The
 * value is bytes the client received over the time to the last byte;
 *   BENCH console_tx_4k_qd*_delivered  the share of the guest's bytes the client received, %.
 *
 * Environment: BENCH_QUICK=1 (less data, fewer rounds), BENCH_CONSOLE_MIB (per round).
 */
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "devices/console.h"
#include "devices/device.h"
#include "tests/bench/bench_common.h"

#define CHUNK      4096u
#define MAX_QD     16u
#define MAX_ROUNDS 7
#define R_NOTIFY   0x50
#define Q_TX       1

struct reader {
	pthread_t th;
	int fd;
	uint64_t want, got;
	double t_last;
};

struct con {
	BENCH_GUEST_MEMBERS;
	struct vdrv_buf buf[MAX_QD];
	char sock[100];
	int client;
};

/* Read until `want` bytes arrived or nothing came for 500 ms. */
static void *reader_main(void *arg)
{
	struct reader *r = arg;
	static char buf[1 << 16];

	while (r->got < r->want) {
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 500) <= 0)
			break;
		n = read(r->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		r->got += (uint64_t)n;
		r->t_last = bench_now();
	}
	return NULL;
}

static int reader_start(struct reader *r, int fd, uint64_t want)
{
	r->fd = fd;
	r->want = want;
	r->got = 0;
	r->t_last = 0;
	return pthread_create(&r->th, NULL, reader_main, r) == 0 ? 0 : -1;
}

/* ---- the raw socket baseline ---- */

static double raw_run(uint64_t total)
{
	int sv[2];
	struct reader r;
	static char chunk[CHUNK];
	double t0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	memset(chunk, 'x', sizeof(chunk));
	t0 = bench_now();
	if (reader_start(&r, sv[1], total) < 0)
		return -1;
	for (uint64_t sent = 0; sent < total; sent += CHUNK)
		if (write(sv[0], chunk, CHUNK) != (ssize_t)CHUNK)
			break;
	pthread_join(r.th, NULL);
	close(sv[0]);
	close(sv[1]);
	return r.got / (r.t_last - t0) / 1048576.0;
}

/* ---- ours ---- */

static int con_start(struct con *c)
{
	char ini[512];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	c->dm.pid = -1;
	c->client = -1;
	c->hub = xsim_hub_start();
	c->dom = c->hub ? xsim_dom_create(c->hub, &(struct xsim_dom_opts){ .name = "con",
									 .ram_mib = 16 }) : NULL;
	if (!c->dom)
		return -1;
	snprintf(c->sock, sizeof(c->sock), "%s/hvc0.sock", xsim_hub_dir(c->hub));
	snprintf(ini, sizeof(ini), "[guest]\nname = con\ndiscovery = explicit\n\n"
		 "[console \"hvc0\"]\nmmio = 0x%llx\nirq = %u\nsocket = %s\nring = 1024\n",
		 (unsigned long long)BENCH_WIN(0), BENCH_SPI(0), c->sock);
	if (bench_daemon_start(c->hub, &c->dm, "con", ini, NULL, NULL, NULL) < 0) {
		bench_dump_log(&c->dm);
		return -1;
	}
	xsim_vio_init(&c->vio, c->dom, 0, BENCH_WIN(0), BENCH_SPI(0));
	if (xsim_vmem_init(&c->mem, c->dom, BENCH_RAM, 4u << 20, false) < 0 ||
	    vdrv_init(&c->drv, &c->vio.io, &c->mem, VIRTIO_BIT(VIRTIO_F_VERSION_1), 2, 64) < 0)
		return -1;
	for (unsigned i = 0; i < MAX_QD; i++) {
		void *h;

		c->buf[i] = (struct vdrv_buf){ vdrv_alloc(&c->mem, CHUNK, 4096, &h), CHUNK, false };
		memset(h, 'x', CHUNK);
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->sock);
	c->client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->client < 0 || connect(c->client, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	usleep(100000);    /* the daemon accepts the client on its loop */
	return 0;
}

/* Transmit `total` bytes, qd buffers in flight; MiB/s the client received, < 0 on error. */
static double con_run(struct con *c, uint64_t total, unsigned qd, uint64_t *lost)
{
	uint64_t chunks = total / CHUNK, sent = 0, done = 0;
	unsigned inflight = 0;
	struct reader r;
	double t0 = bench_now();

	if (reader_start(&r, c->client, total) < 0)
		return -1;
	while (done < chunks) {
		uint32_t len;
		void *tok;
		bool kick = false;

		while (inflight < qd && sent < chunks) {
			if (vdrv_submit(&c->drv, Q_TX, &c->buf[sent % qd], 1, false,
					&c->buf[sent % qd]) < 0)
				break;
			sent++;
			inflight++;
			kick = true;
		}
		if (kick)
			vdrv_write32(&c->drv, R_NOTIFY, Q_TX);
		if (c->vio.io.wait_irq(&c->vio.io, 5) > 0) {
			uint32_t isr = vdrv_read32(&c->drv, 0x60);

			if (isr)
				vdrv_write32(&c->drv, 0x64, isr);
		}
		while (vdrv_get_used(&c->drv, Q_TX, &len, &tok) > 0) {
			inflight--;
			done++;
		}
		if (bench_now() - t0 > 120)
			break;
	}
	pthread_join(r.th, NULL);
	*lost += total - r.got;
	if (!r.got || r.t_last <= t0)
		return -1;
	return r.got / (r.t_last - t0) / 1048576.0;
}

static void run_case(struct con *c, const char *name, unsigned qd, uint64_t total,
		     unsigned rounds)
{
	double ours[MAX_ROUNDS], raw[MAX_ROUNDS];
	uint64_t lost = 0;

	for (unsigned r = 0; r < rounds; r++) {
		ours[r] = con_run(c, total, qd, &lost);
		raw[r] = raw_run(total);
		if (ours[r] < 0 || raw[r] < 0) {
			bench_skip(name, "a round failed");
			return;
		}
	}
	char pct[80];

	if (lost)
		fprintf(stderr, "# %s: %llu bytes dropped by the console ring over %u rounds\n",
			name, (unsigned long long)lost, rounds);
	bench_line(name, bench_median(ours, rounds), "MiB/s", bench_median(raw, rounds), true);
	snprintf(pct, sizeof(pct), "%s_delivered", name);
	bench_line(pct, 100.0 - 100.0 * (double)lost / ((double)total * rounds), "%", 100.0, true);
}

int main(void)
{
	bool quick = bench_quick();
	uint64_t mib = bench_env_u64("BENCH_CONSOLE_MIB", quick ? 16 : 64);
	unsigned rounds = quick ? 3 : 5;
	struct con *c = calloc(1, sizeof(*c));
	int rc = 1;

	if (!c || con_start(c) < 0) {
		fprintf(stderr, "console_bench: setup failed\n");
		bench_skip("console_tx_4k_qd16", "setup failed");
		goto out;
	}
	/* QD1 first: it never overflows the ring, so the flood after it starts from a clean one. */
	run_case(c, "console_tx_4k_qd1", 1, (mib << 20) / 4, rounds);
	run_case(c, "console_tx_4k_qd16", 16, mib << 20, rounds);
	rc = 0;
out:
	if (c && c->client >= 0)
		close(c->client);
	if (c && c->dm.pid > 0)
		xsim_daemon_stop(&c->dm);
	if (c)
		xsim_hub_stop(c->hub);
	free(c);
	return rc;
}
