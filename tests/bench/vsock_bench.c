/*
 * virtio-vsock throughput through the sim daemon's vsock device, one stream connection each
 * way, in 64 KiB packets (Linux's largest), credit-based flow control honoured as a Linux guest
 * does (256 KiB buf_alloc on each side):
 *
 *   BENCH vsock_g2h_64k  guest -> a host program listening on PATH_5000 (the guest connects
 *                        to CID 2 port 5000), MiB/s to the program's last byte
 *   BENCH vsock_h2g_64k  a host program connected to PATH ("CONNECT 6000") -> the guest,
 *                        MiB/s to the guest's last byte; the guest returns credit every 128 KiB
 *
 * Baseline: the same bytes in the same 64 KiB writes through a unix stream socket pair between
 * two threads; ratio = ours / raw. Rounds alternate ours and baseline; medians are reported.
 *
 * Environment: BENCH_QUICK=1 (less data, fewer rounds), BENCH_VSOCK_MIB (per round).
 */
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "devices/device.h"
#include "devices/vsock.h"
#include "tests/bench/bench_common.h"

#define CHUNK      (64u * 1024)
#define PKT        (VSOCK_HDR_LEN + CHUNK)
#define NRX        16u
#define NTX        8u
#define QSIZE      64u
#define CID        3u
#define GUEST_BUF  (256u * 1024)
#define MAX_ROUNDS 7
#define G2H_PORT   5000u
#define H2G_PORT   6000u
#define R_ISR      0x60
#define R_ISR_ACK  0x64

struct vb {
	BENCH_GUEST_MEMBERS;
	char sock[108];
	int lfd;                           /* the host program's listener at sock_5000 */
	uint64_t rx_gpa[NRX], tx_gpa[NTX];
	uint8_t *rx[NRX], *tx[NTX];
	bool tx_busy[NTX];
	/* the connection being measured */
	uint32_t gport, hport;
	bool h2g;                          /* the host program connects (a REQUEST comes to us) */
	bool requested, open;
	uint32_t peer_alloc, peer_fwd;     /* the device's credit, as its packets say */
	uint64_t got;                      /* h2g: payload bytes received */
	uint32_t fwd, fwd_told;            /* h2g: bytes consumed; as last told to the device */
	double t_last;
};

struct peer {
	pthread_t th;
	int fd;
	bool accept;                       /* fd is a listener: accept one connection first */
	uint64_t want, got;
	double t_last;
};

/* ---- host-side threads ---- */

/* Read `want` bytes (or until 2 s of silence). */
static void *reader_main(void *arg)
{
	struct peer *r = arg;
	static char buf[CHUNK];
	int fd = r->fd;

	if (r->accept) {
		struct pollfd p = { .fd = r->fd, .events = POLLIN };

		if (poll(&p, 1, 5000) <= 0 || (fd = accept(r->fd, NULL, NULL)) < 0)
			return NULL;
	}
	while (r->got < r->want) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 2000) <= 0)
			break;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		r->got += (uint64_t)n;
		r->t_last = bench_now();
	}
	if (r->accept)
		close(fd);
	return NULL;
}

static void *writer_main(void *arg)
{
	struct peer *w = arg;
	static char buf[CHUNK];

	memset(buf, 'h', sizeof(buf));
	while (w->got < w->want) {
		ssize_t n = write(w->fd, buf, CHUNK);

		if (n <= 0)
			break;
		w->got += (uint64_t)n;
	}
	return NULL;
}

/* ---- the raw socket baseline ---- */

static double raw_run(uint64_t total)
{
	struct peer r = { .want = total }, w = { .want = total };
	int sv[2];
	double t0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	r.fd = sv[1];
	w.fd = sv[0];
	t0 = bench_now();
	if (pthread_create(&r.th, NULL, reader_main, &r) != 0)
		return -1;
	if (pthread_create(&w.th, NULL, writer_main, &w) != 0)
		return -1;
	pthread_join(w.th, NULL);
	pthread_join(r.th, NULL);
	close(sv[0]);
	close(sv[1]);
	return r.got == total && r.t_last > t0 ? r.got / (r.t_last - t0) / 1048576.0 : -1;
}

/* ---- the guest driver ---- */

static void rx_post(struct vb *v, unsigned i)
{
	struct vdrv_buf b = { v->rx_gpa[i], PKT, true };

	vdrv_submit(&v->drv, VSOCK_Q_RX, &b, 1, false, (void *)(uintptr_t)(i + 1));
}

static void tx_reclaim(struct vb *v)
{
	uint32_t len;
	void *tok;

	while (vdrv_get_used(&v->drv, VSOCK_Q_TX, &len, &tok) == 1)
		v->tx_busy[(uintptr_t)tok - 1] = false;
}

/* One packet of ours with `len` payload bytes; false when every transmit slot is in flight. */
static bool tx_send(struct vb *v, uint16_t op, uint32_t len)
{
	for (unsigned i = 0; i < NTX; i++) {
		if (v->tx_busy[i])
			continue;
		struct vsock_hdr h = { .src_cid = CID, .dst_cid = VSOCK_CID_HOST,
				       .src_port = v->gport, .dst_port = v->hport, .len = len,
				       .type = VSOCK_TYPE_STREAM, .op = op, .buf_alloc = GUEST_BUF,
				       .fwd_cnt = v->fwd };
		struct vdrv_buf b = { v->tx_gpa[i], VSOCK_HDR_LEN + len, false };

		vsock_hdr_put(v->tx[i], &h);
		if (vdrv_submit(&v->drv, VSOCK_Q_TX, &b, 1, false, (void *)(uintptr_t)(i + 1)) < 0)
			return false;
		v->tx_busy[i] = true;
		vdrv_kick(&v->drv, VSOCK_Q_TX);
		return true;
	}
	return false;
}

/* Take what the device sent; true when anything came. */
static bool rx_pump(struct vb *v)
{
	bool any = false;
	uint32_t len;
	void *tok;

	while (vdrv_get_used(&v->drv, VSOCK_Q_RX, &len, &tok) == 1) {
		unsigned i = (unsigned)(uintptr_t)tok - 1;
		struct vsock_hdr h;

		any = true;
		vsock_hdr_get(&h, v->rx[i]);
		rx_post(v, i);
		if (h.dst_port != v->gport)
			continue;              /* the end of a previous round's connection */
		if (v->h2g && !v->requested && h.op == VSOCK_OP_REQUEST) {
			v->requested = true;
			v->hport = h.src_port;
		} else if (h.src_port != v->hport) {
			continue;
		}
		v->peer_alloc = h.buf_alloc;
		v->peer_fwd = h.fwd_cnt;
		if (h.op == VSOCK_OP_RESPONSE)
			v->open = true;
		if (h.op == VSOCK_OP_RW && v->h2g) {
			v->got += h.len;
			v->fwd += h.len;
			v->t_last = bench_now();
		}
	}
	if (any)
		vdrv_kick(&v->drv, VSOCK_Q_RX);
	if (v->h2g && v->open && v->fwd - v->fwd_told >= GUEST_BUF / 2) {
		tx_reclaim(v);
		if (tx_send(v, VSOCK_OP_CREDIT_UPDATE, 0))
			v->fwd_told = v->fwd;
	}
	return any;
}

static void wait_irq(struct vb *v)
{
	if (v->vio.io.wait_irq(&v->vio.io, 5) > 0) {
		uint32_t isr = vdrv_read32(&v->drv, R_ISR);

		if (isr)
			vdrv_write32(&v->drv, R_ISR_ACK, isr);
	}
}

static void conn_begin(struct vb *v, bool h2g, uint32_t gport, uint32_t hport)
{
	v->h2g = h2g;
	v->gport = gport;
	v->hport = hport;
	v->requested = v->open = false;
	v->peer_alloc = v->peer_fwd = 0;
	v->got = 0;
	v->fwd = v->fwd_told = 0;
}

static int vb_start(struct vb *v)
{
	char ini[512];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	v->dm.pid = -1;
	v->lfd = -1;
	v->hub = xsim_hub_start();
	v->dom = v->hub ? xsim_dom_create(v->hub, &(struct xsim_dom_opts){ .name = "vs",
									 .ram_mib = 16 }) : NULL;
	if (!v->dom)
		return -1;
	snprintf(v->sock, sizeof(v->sock), "%s/v.sock", xsim_hub_dir(v->hub));
	snprintf(ini, sizeof(ini), "[guest]\nname = vs\ndiscovery = explicit\n\n"
		 "[vsock \"v0\"]\nmmio = 0x%llx\nirq = %u\nguest_cid = %u\nsocket = %s\n",
		 (unsigned long long)BENCH_WIN(0), BENCH_SPI(0), CID, v->sock);
	if (bench_daemon_start(v->hub, &v->dm, "vs", ini, NULL, NULL, NULL) < 0) {
		bench_dump_log(&v->dm);
		return -1;
	}
	xsim_vio_init(&v->vio, v->dom, 0, BENCH_WIN(0), BENCH_SPI(0));
	if (xsim_vmem_init(&v->mem, v->dom, BENCH_RAM, 4u << 20, false) < 0 ||
	    vdrv_init(&v->drv, &v->vio.io, &v->mem, VIRTIO_BIT(VIRTIO_F_VERSION_1), 3, QSIZE) < 0 ||
	    v->drv.device_id != VIRTIO_ID_VSOCK)
		return -1;
	for (unsigned i = 0; i < NRX; i++) {
		v->rx_gpa[i] = vdrv_alloc(&v->mem, PKT, 16, (void **)&v->rx[i]);
		if (!v->rx_gpa[i])
			return -1;
		rx_post(v, i);
	}
	for (unsigned i = 0; i < NTX; i++) {
		v->tx_gpa[i] = vdrv_alloc(&v->mem, PKT, 16, (void **)&v->tx[i]);
		if (!v->tx_gpa[i])
			return -1;
		memset(v->tx[i] + VSOCK_HDR_LEN, 'g', CHUNK);
	}
	vdrv_kick(&v->drv, VSOCK_Q_RX);
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", v->sock, G2H_PORT) >=
	    (int)sizeof(sa.sun_path))
		return -1;
	v->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (v->lfd < 0 || bind(v->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(v->lfd, 4) < 0)
		return -1;
	return 0;
}

/* Wait until cond() or timeout_s, pumping the receive queue. */
static bool pump_until(struct vb *v, bool (*cond)(const struct vb *), double timeout_s)
{
	double end = bench_now() + timeout_s;

	while (!cond(v)) {
		if (bench_now() > end)
			return false;
		if (!rx_pump(v))
			wait_irq(v);
	}
	return true;
}

static bool is_open(const struct vb *v) { return v->open; }
static bool is_requested(const struct vb *v) { return v->requested; }

/* Guest -> host program: MiB/s, < 0 on error. */
static double g2h_run(struct vb *v, uint64_t total, uint32_t gport)
{
	struct peer r = { .fd = v->lfd, .accept = true, .want = total };
	uint64_t sent = 0;
	double t0, end;

	conn_begin(v, false, gport, G2H_PORT);
	if (pthread_create(&r.th, NULL, reader_main, &r) != 0)
		return -1;
	tx_reclaim(v);
	if (!tx_send(v, VSOCK_OP_REQUEST, 0) || !pump_until(v, is_open, 5)) {
		pthread_join(r.th, NULL);
		return -1;
	}
	t0 = bench_now();
	end = t0 + 60;
	while (sent < total && bench_now() < end) {
		bool progress = false;

		tx_reclaim(v);
		for (;;) {
			uint32_t credit = v->peer_alloc - ((uint32_t)sent - v->peer_fwd);
			uint64_t n = total - sent;

			if (n > CHUNK)
				n = CHUNK;
			if (n > credit)
				n = credit;
			if (!n || !tx_send(v, VSOCK_OP_RW, (uint32_t)n))
				break;
			sent += n;
			progress = true;
		}
		if (rx_pump(v))
			progress = true;
		if (!progress)
			wait_irq(v);
	}
	pthread_join(r.th, NULL);
	tx_reclaim(v);
	tx_send(v, VSOCK_OP_RST, 0);
	return r.got == total && r.t_last > t0 ? r.got / (r.t_last - t0) / 1048576.0 : -1;
}

/* Host program -> guest: MiB/s, < 0 on error. */
static double h2g_run(struct vb *v, uint64_t total)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct peer w = { .want = total };
	char line[32] = "", want[32];
	size_t have = 0;
	double t0, end;
	int fd;

	conn_begin(v, true, H2G_PORT, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", v->sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, "CONNECT 6000\n", 13) != 13 || !pump_until(v, is_requested, 5))
		goto fail;
	v->open = true;
	tx_reclaim(v);
	if (!tx_send(v, VSOCK_OP_RESPONSE, 0))
		goto fail;
	snprintf(want, sizeof(want), "OK %u\n", v->hport);
	while (have < strlen(want)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 5000) <= 0 || (n = read(fd, line + have, 1)) != 1)
			goto fail;
		have++;
	}
	if (strcmp(line, want) != 0)
		goto fail;
	w.fd = fd;
	t0 = bench_now();
	end = t0 + 60;
	if (pthread_create(&w.th, NULL, writer_main, &w) != 0)
		goto fail;
	while (v->got < total && bench_now() < end)
		if (!rx_pump(v))
			wait_irq(v);
	shutdown(fd, SHUT_RDWR);
	pthread_join(w.th, NULL);
	close(fd);
	tx_reclaim(v);
	tx_send(v, VSOCK_OP_RST, 0);
	return v->got == total && v->t_last > t0 ? v->got / (v->t_last - t0) / 1048576.0 : -1;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

static void run_case(struct vb *v, const char *name, bool h2g, uint64_t total, unsigned rounds)
{
	double ours[MAX_ROUNDS], raw[MAX_ROUNDS];

	for (unsigned r = 0; r < rounds; r++) {
		ours[r] = h2g ? h2g_run(v, total) : g2h_run(v, total, 1024 + r);
		raw[r] = raw_run(total);
		if (ours[r] < 0 || raw[r] < 0) {
			bench_dump_log(&v->dm);
			bench_skip(name, "a round failed");
			return;
		}
	}
	bench_line(name, bench_median(ours, rounds), "MiB/s", bench_median(raw, rounds), true);
}

int main(void)
{
	bool quick = bench_quick();
	uint64_t mib = bench_env_u64("BENCH_VSOCK_MIB", quick ? 32 : 128);
	unsigned rounds = quick ? 3 : 5;
	struct vb *v = calloc(1, sizeof(*v));
	int rc = 1;

	if (!v || vb_start(v) < 0) {
		fprintf(stderr, "vsock_bench: setup failed\n");
		if (v && v->dm.pid > 0)
			bench_dump_log(&v->dm);
		bench_skip("vsock_g2h_64k", "setup failed");
		bench_skip("vsock_h2g_64k", "setup failed");
		goto out;
	}
	run_case(v, "vsock_g2h_64k", false, mib << 20, rounds);
	run_case(v, "vsock_h2g_64k", true, mib << 20, rounds);
	rc = 0;
out:
	if (v && v->lfd >= 0)
		close(v->lfd);
	if (v && v->dm.pid > 0)
		xsim_daemon_stop(&v->dm);
	if (v)
		xsim_hub_stop(v->hub);
	free(v);
	return rc;
}
