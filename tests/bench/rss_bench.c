/*
 * Daemon memory serving four devices at once: block (a 16 MiB image), rng, i2c (simulated
 * EEPROM and LM75) and console (socket with a client attached). Every device is initialised
 * by the guest and driven (block reads and writes, rng reads, i2c transfers, console output the
 * client reads) before the daemon's /proc/<pid>/smaps is read.
 *
 *   BENCH rss_four_devices          VmRSS minus the guest's mappings (xensim's memfds: guest RAM,
 *                                   ioreq pages, control page; on Xen, foreign and grant maps),
 *                                   MiB. Baseline 8 MiB (the target); ratio = 8 / value.
 *   BENCH rss_four_devices_private  Private_Clean + Private_Dirty outside those mappings: what
 *                                   this instance alone costs (shared libraries excluded), MiB.
 *
 * Environment: BENCH_QUICK=1 (fewer requests).
 */
#include <endian.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "devices/blk.h"
#include "devices/device.h"
#include "tests/bench/bench_common.h"

#define IMG_BYTES   (16u << 20)
#define TARGET_MIB  8.0
/* VIRTIO_I2C_F_ZERO_LENGTH_REQUEST (bit 0): the device requires it. */

struct dev {
	struct xsim_vio vio;
	struct vdrv drv;
};

struct rig {
	struct xsim_hub *hub;
	struct xsim_dom *dom;
	struct xsim_daemon dm;
	struct vdrv_mem mem;
	struct dev blk, rng, i2c, con;
	char img[256], sock[100];
	int client;
};

static int make_image(const char *path)
{
	static char chunk[1 << 16];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	memset(chunk, 0x5a, sizeof(chunk));
	for (unsigned off = 0; off < IMG_BYTES; off += sizeof(chunk))
		if (pwrite(fd, chunk, sizeof(chunk), off) != (ssize_t)sizeof(chunk)) {
			close(fd);
			return -1;
		}
	return close(fd);
}

static int dev_init(struct rig *r, struct dev *d, unsigned n, uint64_t want, unsigned nq,
		    uint16_t qsize)
{
	int rc;

	xsim_vio_init(&d->vio, r->dom, 0, BENCH_WIN(n), BENCH_SPI(n));
	rc = vdrv_init(&d->drv, &d->vio.io, &r->mem, want | VIRTIO_BIT(VIRTIO_F_VERSION_1), nq,
		       qsize);
	if (rc < 0)
		fprintf(stderr, "rss_bench: device %u: vdrv_init: %s\n", n, strerror(-rc));
	return rc;
}

static int rig_start(struct rig *r)
{
	char ini[1024];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	r->dm.pid = -1;
	r->client = -1;
	snprintf(r->img, sizeof(r->img), "%s/xvd-rss-%d.img", bench_scratch_dir(), (int)getpid());
	r->hub = xsim_hub_start();
	r->dom = r->hub ? xsim_dom_create(r->hub, &(struct xsim_dom_opts){ .name = "rss",
									 .ram_mib = 64 }) : NULL;
	if (!r->dom || make_image(r->img) < 0) {
		fprintf(stderr, "rss_bench: cannot create %s\n", r->img);
		return -1;
	}
	snprintf(r->sock, sizeof(r->sock), "%s/hvc0.sock", xsim_hub_dir(r->hub));
	snprintf(ini, sizeof(ini),
		 "[guest]\nname = rss\ndiscovery = explicit\n\n"
		 "[block \"disk\"]\nmmio = 0x%llx\nirq = %u\npath = %s\n\n"
		 "[rng]\nmmio = 0x%llx\nirq = %u\nrate = 0\n\n"
		 "[i2c \"bus0\"]\nmmio = 0x%llx\nirq = %u\nsim = eeprom@0x50\nsim = lm75@0x48\n\n"
		 "[console \"hvc0\"]\nmmio = 0x%llx\nirq = %u\nsocket = %s\n",
		 (unsigned long long)BENCH_WIN(0), BENCH_SPI(0), r->img,
		 (unsigned long long)BENCH_WIN(1), BENCH_SPI(1),
		 (unsigned long long)BENCH_WIN(2), BENCH_SPI(2),
		 (unsigned long long)BENCH_WIN(3), BENCH_SPI(3), r->sock);
	if (bench_daemon_start(r->hub, &r->dm, "rss", ini, NULL, NULL, NULL) < 0) {
		bench_dump_log(&r->dm);
		return -1;
	}
	if (xsim_vmem_init(&r->mem, r->dom, BENCH_RAM, 32u << 20, false) < 0)
		return -1;
	/* No EVENT_IDX: vdrv_transfer does not re-arm used_event, it relies on interrupts. */
	if (dev_init(r, &r->blk, 0, 0, 1, 256) < 0 || dev_init(r, &r->rng, 1, 0, 1, 64) < 0 ||
	    dev_init(r, &r->i2c, 2, VIRTIO_BIT(0), 1, 64) < 0 ||
	    dev_init(r, &r->con, 3, 0, 2, 64) < 0) {
		fprintf(stderr, "rss_bench: a driver failed to initialise its device\n");
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", r->sock);
	r->client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return r->client >= 0 && connect(r->client, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0
											       : -1;
}

static int blk_io(struct rig *r, unsigned n)
{
	struct virtio_blk_outhdr *hdr;
	uint8_t *status;
	struct vdrv_buf b[3] = {
		{ vdrv_alloc(&r->mem, 16, 16, (void **)&hdr), 16, false },
		{ vdrv_alloc(&r->mem, 4096, 4096, NULL), 4096, true },
		{ vdrv_alloc(&r->mem, 1, 1, (void **)&status), 1, true },
	};

	for (unsigned i = 0; i < n; i++) {
		bool wr = i % 8 == 7;

		hdr->type = htole32(wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN);
		hdr->ioprio = 0;
		hdr->sector = htole64((uint64_t)((i * 2654435761u) % (IMG_BYTES / 4096)) * 8);
		b[1].write = !wr;
		*status = 0xee;
		if (vdrv_transfer(&r->blk.drv, 0, b, 3, false, 10000) < 0 ||
		    *status != VIRTIO_BLK_S_OK)
			return -1;
	}
	return 0;
}

static int rng_io(struct rig *r, unsigned n)
{
	struct vdrv_buf b = { vdrv_alloc(&r->mem, 256, 64, NULL), 256, true };

	for (unsigned i = 0; i < n; i++)
		if (vdrv_transfer(&r->rng.drv, 0, &b, 1, false, 10000) <= 0)
			return -1;
	return 0;
}

/* LM75 temperature register reads: header, 2-byte read buffer, status. */
static int i2c_io(struct rig *r, unsigned n)
{
	uint8_t *h, *st;
	struct vdrv_buf b[3] = {
		{ vdrv_alloc(&r->mem, 8, 8, (void **)&h), 8, false },
		{ vdrv_alloc(&r->mem, 2, 8, NULL), 2, true },
		{ vdrv_alloc(&r->mem, 1, 8, (void **)&st), 1, true },
	};
	uint16_t a = htole16(0x48 << 1);
	uint32_t f = htole32(2);    /* VIRTIO_I2C_FLAGS_M_RD */

	memset(h, 0, 8);
	memcpy(h, &a, 2);
	memcpy(h + 4, &f, 4);
	for (unsigned i = 0; i < n; i++) {
		*st = 0xee;
		if (vdrv_transfer(&r->i2c.drv, 0, b, 3, false, 10000) < 0 || *st != 0)
			return -1;
	}
	return 0;
}

/* Console port 0 output (transmit queue 1), 4 KiB at a time; the client drains as it goes. */
static int con_io(struct rig *r, unsigned n)
{
	uint8_t *p, sink[65536];
	struct vdrv_buf b = { vdrv_alloc(&r->mem, 4096, 64, (void **)&p), 4096, false };

	memset(p, 'x', 4096);
	for (unsigned i = 0; i < n; i++) {
		if (vdrv_transfer(&r->con.drv, 1, &b, 1, false, 10000) < 0)
			return -1;
		while (recv(r->client, sink, sizeof(sink), MSG_DONTWAIT) > 0)
			;
	}
	return 0;
}

static void show(const char *when, const struct bench_mem *m)
{
	fprintf(stderr, "# rss_four_devices %s: VmRSS %llu KiB, guest mappings %llu KiB, "
		"own %llu KiB, private %llu KiB, Pss own %llu KiB\n", when,
		(unsigned long long)m->rss, (unsigned long long)m->guest,
		(unsigned long long)m->own, (unsigned long long)m->private_own,
		(unsigned long long)m->pss_own);
}

int main(void)
{
	unsigned k = bench_quick() ? 1 : 4;
	struct rig *r = calloc(1, sizeof(*r));
	struct bench_mem m0, m1;
	int rc = 1;

	if (!r || rig_start(r) < 0) {
		fprintf(stderr, "rss_bench: setup failed\n");
		bench_skip("rss_four_devices", "setup failed");
		goto out;
	}
	bench_mem_of(r->dm.pid, &m0);
	show("after start", &m0);
	if (blk_io(r, 1000 * k) < 0 || rng_io(r, 500 * k) < 0 || i2c_io(r, 200 * k) < 0 ||
	    con_io(r, 256 * k) < 0) {
		fprintf(stderr, "rss_bench: a device request failed\n");
		bench_skip("rss_four_devices", "a device request failed");
		goto out;
	}
	if (bench_mem_of(r->dm.pid, &m1) < 0)
		goto out;
	show("after I/O", &m1);
	bench_line("rss_four_devices", m1.own / 1024.0, "MiB", TARGET_MIB, false);
	bench_line("rss_four_devices_private", m1.private_own / 1024.0, "MiB", TARGET_MIB, false);
	rc = 0;
out:
	if (r && r->client >= 0)
		close(r->client);
	if (r && r->dm.pid > 0)
		xsim_daemon_stop(&r->dm);
	if (r) {
		xsim_hub_stop(r->hub);
		unlink(r->img);
	}
	free(r);
	return rc;
}
