/*
 * libFuzzer target: virtio-i2c request parsing. A real i2c device (devices/i2c.c) with a
 * simulated EEPROM at 0x50 and an LM75 at 0x48 behind the real transport, on a gmem_flat guest
 * RAM; the input becomes well-formed rings carrying arbitrary requests (headers with any
 * address and flags, FAIL_NEXT groups, payloads of any length and direction, buffers in
 * read-only pages and holes: see fuzz_blk_i2c_chains.h).
 *
 * Input: [0] bit0 offer INDIRECT, bit1 EVENT_IDX, bit2 restrict the bus to an allow list
 * (0x48 only), then chains. Any crash, sanitizer report, chain neither returned nor reported
 * with NEEDS_RESET, or mapping left behind after the reset is a bug.
 */
#include "config/config.h"
#include "lib/log.h"
#include "tests/fuzz/fuzz_blk_i2c_chains.h"

extern const struct vdev_ops vdev_i2c_ops;

struct fz_i2c {
	struct gmem *gm;
	struct vdev_host host;
	struct vdev *d[2];          /* [1]: with an allow list */
};

static struct fz_i2c *fz_i2c_get(void)
{
	static struct fz_i2c s;
	static bool tried;
	struct config_device cfg = { .type = DEV_I2C, .devid = -1 };

	if (tried)
		return s.d[0] && s.d[1] ? &s : NULL;
	tried = true;
	log_init(LOG_CRIT, false);
	s.gm = fz_ram();
	if (!s.gm)
		return NULL;
	/* No loop: the device then never defers work (16 chains stay under its budget). */
	s.host = (struct vdev_host){ .gm = s.gm, .guest_name = "fuzz", .raise_irq = fz_no_irq };
	cfg.u.i2c.nsims = 2;
	cfg.u.i2c.sims[0] = (struct config_i2c_sim){ .kind = I2C_SIM_EEPROM, .addr = 0x50 };
	cfg.u.i2c.sims[1] = (struct config_i2c_sim){ .kind = I2C_SIM_LM75, .addr = 0x48 };
	if (vdev_i2c_ops.create(&s.host, &cfg, &s.d[0]) < 0)
		return NULL;
	cfg.u.i2c.allow_set = true;
	cfg.u.i2c.allow[0x48] = 1;
	if (vdev_i2c_ops.create(&s.host, &cfg, &s.d[1]) < 0)
		s.d[1] = NULL;
	return s.d[1] ? &s : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_i2c *s = fz_i2c_get();
	struct fz_in in;
	struct fz_rings r;

	if (!s || !fz_begin(s->gm, data, size, &in, &r))
		return 0;
	unsigned f = fz_take(&in, 1);
	struct vdev *d = s->d[(f >> 2) & 1];
	uint64_t want = VIRTIO_BIT(0) | /* ZERO_LENGTH_REQUEST, which the device requires */
			(f & 1 ? VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) : 0) |
			(f & 2 ? VIRTIO_BIT(VIRTIO_F_EVENT_IDX) : 0);

	fz_publish(d, &r, &in, want);
	fz_wr(d, 0x050, 0);
	fz_end(d, &r);
	return 0;
}
