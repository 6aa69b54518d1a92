/*
 * libFuzzer target: virtio-blk request parsing. Real virtio-blk devices (devices/blk.c) on a
 * 1 MiB temporary image, with io_uring and a libev loop, behind the real transport on a
 * gmem_flat guest RAM; the input becomes well-formed rings carrying arbitrary requests (headers
 * of any type and sector, payloads of any length and direction, buffers in read-only pages and
 * holes: see fuzz_blk_i2c_chains.h). The loop runs until the kernel holds no request.
 *
 * Input: [0] bit0 offer INDIRECT, bit1 EVENT_IDX, bit2 writethrough (the driver clears
 * `writeback`), bit3 the cache = none device, bit4 the read-only device, then chains. Any
 * crash, sanitizer report, chain neither returned nor reported with NEEDS_RESET, or mapping
 * left behind after the reset is a bug.
 */
#include <ev.h>
#include <stdio.h>
#include <unistd.h>

#include "config/config.h"
#include "devices/blk.h"
#include "lib/log.h"
#include "tests/fuzz/fuzz_blk_i2c_chains.h"

struct fz_blk {
	struct gmem *gm;
	struct ev_loop *loop;
	struct vdev_host host;
	char image[64];
	struct vdev *d[4];          /* [cache none << 1 | read-only] */
};

static int fz_blk_image(struct fz_blk *s)
{
	int fd;

	snprintf(s->image, sizeof(s->image), "/tmp/fuzz_blk.XXXXXX");
	fd = mkstemp(s->image);
	if (fd < 0)
		return -1;
	int rc = ftruncate(fd, 1 << 20);

	close(fd);
	return rc;
}

static struct fz_blk *fz_blk_get(void)
{
	static struct fz_blk s;
	static bool tried;
	struct config_device cfg = { .type = DEV_BLOCK, .devid = -1, .name = "fuzz" };

	if (tried)
		return s.d[3] ? &s : NULL;
	tried = true;
	log_init(LOG_CRIT, false);
	s.gm = fz_ram();
	s.loop = ev_loop_new(EVFLAG_AUTO);
	if (!s.gm || !s.loop || fz_blk_image(&s) < 0)
		return NULL;
	s.host = (struct vdev_host){ .loop = s.loop, .gm = s.gm, .guest_name = "fuzz",
				     .raise_irq = fz_no_irq };
	snprintf(cfg.u.block.path, sizeof(cfg.u.block.path), "%s", s.image);
	cfg.u.block.queues = 1;
	cfg.u.block.queue_size = FZ_QSIZE;
	cfg.u.block.discard = cfg.u.block.write_zeroes = true;
	for (unsigned i = 0; i < 4; i++) {
		cfg.u.block.readonly = i & 1;
		cfg.u.block.cache = i & 2 ? BLK_CACHE_NONE : BLK_CACHE_WRITEBACK;
		if (vdev_block_ops.create(&s.host, &cfg, &s.d[i]) < 0)
			break;
	}
	unlink(s.image);    /* the devices keep their descriptors; nothing is left in /tmp */
	return s.d[3] ? &s : NULL;
}

/* Run the loop until the kernel holds none of the device's requests (bounded). */
static void fz_blk_settle(struct fz_blk *s, struct vdev *d)
{
	const struct blk_stats *st = blk_get_stats(d);

	for (unsigned i = 0; i < 10000 && st->inflight; i++)
		ev_run(s->loop, EVRUN_ONCE);
	if (st->inflight)
		abort();
	ev_run(s->loop, EVRUN_NOWAIT);   /* deferred work (a queue beyond its budget) */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_blk *s = fz_blk_get();
	struct fz_in in;
	struct fz_rings r;

	if (!s || !fz_begin(s->gm, data, size, &in, &r))
		return 0;
	unsigned f = fz_take(&in, 1);
	struct vdev *d = s->d[((f >> 3) & 1) << 1 | ((f >> 4) & 1)];
	uint64_t want = VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE) |
			VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES) |
			VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_RO) |
			(f & 1 ? VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) : 0) |
			(f & 2 ? VIRTIO_BIT(VIRTIO_F_EVENT_IDX) : 0);

	fz_publish(d, &r, &in, want);
	if (f & 4)      /* the cache mode, set before the device sees the chains */
		vmmio_write(d, 0x100 + VIRTIO_BLK_CFG_WRITEBACK, 1, 0);
	fz_wr(d, 0x050, 0);
	fz_blk_settle(s, d);
	fz_end(d, &r);
	return 0;
}
