/*
 * virtio-i2c (device id 34, virtio 1.2 §5.18): one request queue; each chain is one I2C message
 * (out header, optional buffer, in status byte). Consecutive chains linked by FAIL_NEXT form one
 * combined transfer (repeated STARTs, one STOP); the first failing message ends it and every later
 * message of the group reports an error without reaching the bus.
 *
 * Backends: simulated clients (devices/i2c_sim.h) and a host adapter (`adapter = /dev/i2c-N`,
 * I2C_RDWR, or SMBus commands when the adapter has no plain-I2C support). Both are served
 * synchronously inside queue_notify: simulation is instant; the adapter ioctl blocks the loop for
 * the duration of the transfer (an I2C message at 100 kHz is ~0.1 ms per byte, bounded by the
 * 64 KiB message limit and the adapter's own timeout). That is accepted for the low rates I2C
 * sees; a worker thread is the remedy if a slow bus ever stalls other devices of the guest.
 *
 * Every header is copied out of guest memory once, then validated; payloads are bounced through
 * private buffers so the guest cannot change them while the bus runs.
 */
#include <endian.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "config/config.h"
#include "devices/device.h"
#include "devices/i2c_sim.h"
#include "devices/iov.h"

extern const struct vdev_ops vdev_i2c_ops;

#define I2C_DEVICE_ID   34
#define I2C_QUEUE_MAX   128

#define VIRTIO_I2C_F_ZERO_LENGTH_REQUEST 0
#define VIRTIO_I2C_FLAGS_FAIL_NEXT 1u
#define VIRTIO_I2C_FLAGS_M_RD      2u
#define VIRTIO_I2C_MSG_OK  0
#define VIRTIO_I2C_MSG_ERR 1

#define I2C_HDR_LEN   8u
#define I2C_LEN_MAX   65535u   /* struct i2c_msg's len is 16 bits */
/*
 * Linux uses three descriptors (header, buffer, status). Virtio lets a driver split any of them,
 * so a few more are accepted; beyond this bound a chain is not a plausible request.
 */
#define I2C_DESC_MAX  8u
/* The longest combined transfer: what one I2C_RDWR ioctl accepts. */
#define I2C_GROUP_MAX I2C_RDWR_IOCTL_MAX_MSGS
#define I2C_NADDR     128u

struct virtio_i2c_out_hdr {
	uint16_t addr;      /* le16: 7-bit address in bits 7..1 */
	uint16_t padding;
	uint32_t flags;     /* le32 */
};

/* One popped request, validated. */
struct i2c_req {
	struct vq_elem *e;
	uint16_t addr;      /* 7-bit */
	bool rd;
	bool fail_next;     /* the next chain belongs to the same transfer */
	bool has_status;    /* a device-writable byte exists for the status */
	bool valid;         /* well-formed and allowed: may reach the bus */
	uint32_t len;       /* payload bytes */
	uint8_t *buf;       /* private copy of the payload */
};

struct i2c_dev {
	struct vdev vdev;
	struct i2c_sim_bus *sim;
	struct config_i2c cfg_sims;   /* the sim list as created, for reconfigure */
	int fd;                       /* host adapter, -1 without one */
	unsigned long funcs;          /* I2C_FUNCS of the adapter */
	char adapter[CONFIG_PATH_MAX];
	bool allow_set;
	uint8_t allow[I2C_NADDR];
	/* A failed request had FAIL_NEXT but its group went on in chains not yet popped. */
	bool fail_latched;
	ev_idle more;                 /* VQ_BUDGET chains done, more waiting: continue next turn */
	ev_timer save;                /* a coalesced EEPROM save is due (i2c_sim_save_due) */
	unsigned ngroup;
	struct i2c_req group[I2C_GROUP_MAX];
	uint64_t stat_xfers, stat_errors;
};

static struct i2c_dev *i2c_of(struct vdev *d)
{
	return container_of(d, struct i2c_dev, vdev);
}

/* ---- parsing one chain ------------------------------------------------------------------- */

/* A request that must not reach the bus; the reason goes to the (rate-limited) log. */
static void i2c_reject(struct i2c_dev *i, struct i2c_req *r, int prio, const char *why)
{
	r->valid = false;
	vdev_log(&i->vdev, VDEV_LOG_REQUEST, prio, "%s: request to 0x%02x refused: %s",
		 i->vdev.name, r->addr, why);
}

/* Header fields: address format and flags. Returns false (and rejects) when unusable. */
static bool i2c_parse_hdr(struct i2c_dev *i, struct i2c_req *r)
{
	struct virtio_i2c_out_hdr hdr;
	uint32_t flags;
	uint16_t addr;

	iov_to_buf(r->e->iov, r->e->n_out, 0, &hdr, sizeof(hdr));
	flags = le32toh(hdr.flags);
	addr = le16toh(hdr.addr);
	r->fail_next = flags & VIRTIO_I2C_FLAGS_FAIL_NEXT;
	r->rd = flags & VIRTIO_I2C_FLAGS_M_RD;
	r->addr = (addr >> 1) & 0x7f;
	if (flags & ~(VIRTIO_I2C_FLAGS_FAIL_NEXT | VIRTIO_I2C_FLAGS_M_RD)) {
		i2c_reject(i, r, LOG_WARNING, "reserved flag bits set");
		return false;
	}
	/* Bits 15..8 and 0 are zero for a 7-bit address; 10-bit addresses are not supported. */
	if (addr & ~0xfeu) {
		i2c_reject(i, r, LOG_WARNING, "10-bit or malformed address field");
		return false;
	}
	return true;
}

/* Buffer placement must match M_RD: a read's buffer is writable, a write's readable. */
static bool i2c_parse_len(struct i2c_dev *i, struct i2c_req *r)
{
	const struct vq_elem *e = r->e;

	if (r->rd && e->out_len != I2C_HDR_LEN) {
		i2c_reject(i, r, LOG_WARNING, "read request with a device-readable buffer");
		return false;
	}
	if (!r->rd && e->in_len != 1) {
		i2c_reject(i, r, LOG_WARNING, "write request with a device-writable buffer");
		return false;
	}
	r->len = r->rd ? e->in_len - 1 : e->out_len - I2C_HDR_LEN;
	if (r->len > I2C_LEN_MAX) {
		i2c_reject(i, r, LOG_WARNING, "buffer longer than 64 KiB");
		return false;
	}
	return true;
}

/* Why a request that has a readable header must not reach the bus; NULL when it may. */
static const char *i2c_check(struct i2c_dev *i, struct i2c_req *r, int *prio)
{
	*prio = LOG_WARNING;
	if (!r->has_status)
		return "no device-writable status byte";
	if (!i2c_parse_len(i, r))
		return NULL;   /* already rejected with its reason */
	*prio = LOG_NOTICE;
	if (i->allow_set && !i->allow[r->addr])
		return "address not in the allow list";
	*prio = LOG_ERR;
	r->buf = malloc(r->len ? r->len : 1);
	return r->buf ? NULL : "out of memory";
}

static void i2c_parse(struct i2c_dev *i, struct vq_elem *e, struct i2c_req *r)
{
	const char *why = NULL;
	int prio = LOG_WARNING;

	memset(r, 0, sizeof(*r));
	r->e = e;
	r->valid = true;
	/* The status is the last device-writable byte; without one nothing can be reported. */
	r->has_status = e->in_len >= 1;
	if ((unsigned)e->n_out + e->n_in > I2C_DESC_MAX)
		why = "too many descriptors";
	else if (e->out_len < I2C_HDR_LEN)
		why = "header shorter than 8 bytes";
	else if (i2c_parse_hdr(i, r))
		why = i2c_check(i, r, &prio);
	if (why)
		i2c_reject(i, r, prio, why);
	if (r->valid && !r->rd)
		iov_to_buf(e->iov, e->n_out, I2C_HDR_LEN, r->buf, r->len);
}

/* ---- backends ---------------------------------------------------------------------------- */

static unsigned i2c_sim_run(struct i2c_dev *i, const struct i2c_req *reqs, unsigned n)
{
	struct i2c_sim_msg msgs[I2C_GROUP_MAX];

	for (unsigned k = 0; k < n; k++)
		msgs[k] = (struct i2c_sim_msg){ .addr = reqs[k].addr, .rd = reqs[k].rd,
						.buf = reqs[k].buf, .len = reqs[k].len };
	return i2c_sim_transfer(i->sim, msgs, n);
}

static int i2c_smbus(struct i2c_dev *i, uint16_t addr, uint8_t rw, uint8_t cmd, uint32_t size,
		     union i2c_smbus_data *data)
{
	struct i2c_smbus_ioctl_data args = { .read_write = rw, .command = cmd, .size = size,
					     .data = data };

	/* FORCE: I2C_RDWR ignores kernel drivers bound to an address too; allow guards access. */
	if (ioctl(i->fd, I2C_SLAVE_FORCE, (unsigned long)addr) < 0)
		return -errno;
	return ioctl(i->fd, I2C_SMBUS, &args) < 0 ? -errno : 0;
}

/* A single message on an SMBus-only adapter; returns 0 or a negative errno. */
static int i2c_smbus_one(struct i2c_dev *i, const struct i2c_req *r)
{
	union i2c_smbus_data d;
	const uint8_t *b = r->buf;
	unsigned long f = i->funcs;
	int err;

	if (r->len == 0 && (f & I2C_FUNC_SMBUS_QUICK))
		return i2c_smbus(i, r->addr, r->rd ? I2C_SMBUS_READ : I2C_SMBUS_WRITE, 0,
				 I2C_SMBUS_QUICK, NULL);
	if (r->rd && r->len == 1 && (f & I2C_FUNC_SMBUS_READ_BYTE)) {
		err = i2c_smbus(i, r->addr, I2C_SMBUS_READ, 0, I2C_SMBUS_BYTE, &d);
		if (!err)
			r->buf[0] = d.byte;
		return err;
	}
	if (r->rd)
		return -EOPNOTSUPP;
	if (r->len == 1 && (f & I2C_FUNC_SMBUS_WRITE_BYTE))
		return i2c_smbus(i, r->addr, I2C_SMBUS_WRITE, b[0], I2C_SMBUS_BYTE, NULL);
	if (r->len == 2 && (f & I2C_FUNC_SMBUS_WRITE_BYTE_DATA)) {
		d.byte = b[1];
		return i2c_smbus(i, r->addr, I2C_SMBUS_WRITE, b[0], I2C_SMBUS_BYTE_DATA, &d);
	}
	if (r->len == 3 && (f & I2C_FUNC_SMBUS_WRITE_WORD_DATA)) {
		d.word = (uint16_t)(b[1] | b[2] << 8);   /* SMBus sends the low byte first */
		return i2c_smbus(i, r->addr, I2C_SMBUS_WRITE, b[0], I2C_SMBUS_WORD_DATA, &d);
	}
	if (r->len >= 2 && r->len <= I2C_SMBUS_BLOCK_MAX + 1 &&
	    (f & I2C_FUNC_SMBUS_WRITE_I2C_BLOCK)) {
		d.block[0] = (uint8_t)(r->len - 1);
		memcpy(&d.block[1], b + 1, r->len - 1);
		return i2c_smbus(i, r->addr, I2C_SMBUS_WRITE, b[0], I2C_SMBUS_I2C_BLOCK_DATA, &d);
	}
	return -EOPNOTSUPP;
}

/* Register read (write command byte, repeated START, read) on an SMBus-only adapter. */
static int i2c_smbus_cmd_read(struct i2c_dev *i, const struct i2c_req *w, const struct i2c_req *r)
{
	union i2c_smbus_data d;
	unsigned long f = i->funcs;
	int err;

	if (w->addr != r->addr || w->len != 1 || r->len == 0)
		return -EOPNOTSUPP;
	if (r->len == 1 && (f & I2C_FUNC_SMBUS_READ_BYTE_DATA)) {
		err = i2c_smbus(i, r->addr, I2C_SMBUS_READ, w->buf[0], I2C_SMBUS_BYTE_DATA, &d);
		if (!err)
			r->buf[0] = d.byte;
		return err;
	}
	if (r->len == 2 && (f & I2C_FUNC_SMBUS_READ_WORD_DATA)) {
		err = i2c_smbus(i, r->addr, I2C_SMBUS_READ, w->buf[0], I2C_SMBUS_WORD_DATA, &d);
		if (!err) {
			r->buf[0] = (uint8_t)d.word;
			r->buf[1] = (uint8_t)(d.word >> 8);
		}
		return err;
	}
	if (r->len > I2C_SMBUS_BLOCK_MAX || !(f & I2C_FUNC_SMBUS_READ_I2C_BLOCK))
		return -EOPNOTSUPP;
	d.block[0] = (uint8_t)r->len;
	err = i2c_smbus(i, r->addr, I2C_SMBUS_READ, w->buf[0], I2C_SMBUS_I2C_BLOCK_DATA, &d);
	if (!err && d.block[0] != r->len)
		err = -EIO;
	if (!err)
		memcpy(r->buf, &d.block[1], r->len);
	return err;
}

/* Transfers an SMBus adapter can express: one message, or a command byte then a read. */
static unsigned i2c_smbus_run(struct i2c_dev *i, const struct i2c_req *reqs, unsigned n)
{
	int err = -EOPNOTSUPP;

	if (n == 1)
		err = i2c_smbus_one(i, &reqs[0]);
	else if (n == 2 && !reqs[0].rd && reqs[1].rd)
		err = i2c_smbus_cmd_read(i, &reqs[0], &reqs[1]);
	if (err == -EOPNOTSUPP)
		vdev_log(&i->vdev, VDEV_LOG_REQUEST, LOG_NOTICE,
			 "%s: %s cannot express this %u-message transfer", i->vdev.name, i->adapter,
			 n);
	return err ? 0 : n;
}

static unsigned i2c_hw_run(struct i2c_dev *i, const struct i2c_req *reqs, unsigned n)
{
	struct i2c_msg msgs[I2C_GROUP_MAX];
	struct i2c_rdwr_ioctl_data data = { .msgs = msgs, .nmsgs = n };
	int got;

	/* Many adapters refuse zero-length messages; a probe is what SMBus quick is for. */
	if (!(i->funcs & I2C_FUNC_I2C) || (n == 1 && reqs[0].len == 0 &&
					   (i->funcs & I2C_FUNC_SMBUS_QUICK)))
		return i2c_smbus_run(i, reqs, n);
	for (unsigned k = 0; k < n; k++)
		msgs[k] = (struct i2c_msg){ .addr = reqs[k].addr,
					    .flags = reqs[k].rd ? I2C_M_RD : 0,
					    .len = (uint16_t)reqs[k].len, .buf = reqs[k].buf };
	/* A NACK is an ordinary answer (i2cdetect probes every address): not logged. */
	got = ioctl(i->fd, I2C_RDWR, &data);
	if (got < 0)
		return 0;
	/* The kernel reports all-or-nothing; a short count is taken at its word. */
	return (unsigned)got < n ? (unsigned)got : n;
}

/*
 * Run reqs[0..n) (all valid) as one transfer on the backend serving the first address; a later
 * message for the other backend cannot join that transfer and fails there. Returns how many
 * messages completed.
 */
static unsigned i2c_run(struct i2c_dev *i, const struct i2c_req *reqs, unsigned n)
{
	bool sim;
	unsigned k;

	if (i->fd < 0)
		return i->sim ? i2c_sim_run(i, reqs, n) : 0;   /* the sim bus NACKs for us */
	if (!i->sim)
		return i2c_hw_run(i, reqs, n);
	sim = i2c_sim_present(i->sim, reqs[0].addr);
	for (k = 1; k < n; k++)
		if (i2c_sim_present(i->sim, reqs[k].addr) != sim)
			break;
	return sim ? i2c_sim_run(i, reqs, k) : i2c_hw_run(i, reqs, k);
}

/* ---- completing requests ----------------------------------------------------------------- */

/* Write back the payload (reads) and the status byte; returns the length to return. */
static uint32_t i2c_complete(struct i2c_dev *i, struct i2c_req *r, bool ok)
{
	struct vq_elem *e = r->e;
	const struct iovec *in = &e->iov[e->n_out];
	uint8_t status = ok ? VIRTIO_I2C_MSG_OK : VIRTIO_I2C_MSG_ERR;
	uint32_t len = 0;

	if (r->has_status) {
		/* A failed read hands back zeroes, never stale or partial bus data. */
		if (r->valid && r->rd && ok)
			iov_from_buf(in, e->n_in, 0, r->buf, r->len);
		else if (r->valid && r->rd)
			iov_memset(in, e->n_in, 0, 0, r->len);
		iov_from_buf(in, e->n_in, e->in_len - 1, &status, 1);
		len = e->in_len;
	}
	i->stat_errors += !ok;
	free(r->buf);
	r->buf = NULL;
	return len;
}

/*
 * Execute the collected group: the valid prefix goes to the bus as one transfer; from the first
 * invalid or failed request on, everything reports an error (FAIL_NEXT semantics). The group is
 * returned with one used index update: a crash leaves all of it in flight or none, so a next
 * instance never runs the end of a transfer without its beginning (vq_adopt()).
 */
static void i2c_run_group(struct i2c_dev *i, bool failing)
{
	unsigned n = i->ngroup, valid = 0, done = 0;
	struct vq_elem *e[I2C_GROUP_MAX] = { 0 };
	uint32_t len[I2C_GROUP_MAX] = { 0 };
	bool no_status = false;

	while (!failing && valid < n && i->group[valid].valid)
		valid++;
	if (valid) {
		done = i2c_run(i, i->group, valid);
		i->stat_xfers++;
	}
	for (unsigned k = 0; k < n; k++) {
		no_status |= !i->group[k].has_status;
		e[k] = i->group[k].e;
		len[k] = i2c_complete(i, &i->group[k], k < done);
	}
	vq_push_many(e, len, n);
	/* The group goes on in chains not yet available: they must fail too. */
	i->fail_latched = done < n && i->group[n - 1].fail_next;
	i->ngroup = 0;
	if (no_status)
		vdev_needs_reset(&i->vdev, "request without a device-writable status byte");
}

/*
 * Pop one group: chains up to the first without FAIL_NEXT, or until the ring runs dry. Returns
 * true when the group has to fail as a whole (too long, or continuing a failed one).
 */
static bool i2c_collect(struct i2c_dev *i, struct virtqueue *vq, int *err)
{
	bool failing = i->fail_latched;

	*err = 0;
	while (i->ngroup < I2C_GROUP_MAX) {
		struct vq_elem *e = vq_pop(vq, err);
		struct i2c_req *r = &i->group[i->ngroup];

		if (!e)
			return failing;
		/* The latch holds until the continuation actually arrives. */
		i->fail_latched = false;
		i->ngroup++;
		i2c_parse(i, e, r);
		if (!r->fail_next)
			return failing;
	}
	vdev_log(&i->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
		 "%s: transfer longer than %u messages refused", i->vdev.name, I2C_GROUP_MAX);
	return true;
}

static void i2c_defer(struct i2c_dev *i)
{
	struct ev_loop *loop = i->vdev.host->loop;

	if (loop && !ev_is_active(&i->more))
		ev_idle_start(loop, &i->more);
}

/* EEPROM writes left a save pending: run it when due (at once without an event loop). */
static void i2c_save_schedule(struct i2c_dev *i)
{
	struct ev_loop *loop = i->vdev.host->loop;
	double due = i2c_sim_save_due(i->sim);

	if (due < 0 || (loop && ev_is_active(&i->save)))
		return;
	if (!loop) {
		i2c_sim_save(i->sim, false);
		return;
	}
	ev_timer_set(&i->save, due, 0.);
	ev_timer_start(loop, &i->save);
}

static void i2c_save_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct i2c_dev *i = container_of(w, struct i2c_dev, save);

	(void)loop;
	(void)revents;
	i2c_sim_save(i->sim, false);
	i2c_save_schedule(i);   /* a failed save is tried again a period later */
}

/* Serve up to about VQ_BUDGET chains (a group is never split by the budget). */
static void i2c_process(struct i2c_dev *i)
{
	struct virtqueue *vq = &i->vdev.vqs[0];
	unsigned served = 0;
	int err = 0;

	while (vdev_active(&i->vdev) && served < VQ_BUDGET) {
		bool failing = i2c_collect(i, vq, &err);

		if (!i->ngroup)
			break;
		served += i->ngroup;
		i2c_run_group(i, failing);
		if (err)
			break;
	}
	if (served)
		vdev_used(&i->vdev, vq);
	if (i->sim)
		i2c_save_schedule(i);
	if (err)
		vdev_vq_error(&i->vdev, vq);
	else if (served >= VQ_BUDGET && vq_more(vq))
		i2c_defer(i);
}

static void i2c_more_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w);
	i2c_process(container_of(w, struct i2c_dev, more));
}

/* ---- vdev_ops ---------------------------------------------------------------------------- */

static void i2c_queue_notify(struct vdev *d, unsigned q)
{
	(void)q;   /* the transport passes only existing queues: there is one */
	i2c_process(i2c_of(d));
}

/* The spec makes ZERO_LENGTH_REQUEST mandatory: the device must refuse a driver without it. */
static bool i2c_features_ok(struct vdev *d, uint64_t features)
{
	(void)d;
	return (features & VIRTIO_BIT(VIRTIO_I2C_F_ZERO_LENGTH_REQUEST)) != 0;
}

static void i2c_reset(struct vdev *d)
{
	struct i2c_dev *i = i2c_of(d);

	/* Nothing is held across calls (groups complete inside i2c_process). */
	i->fail_latched = false;
	if (d->host->loop)
		ev_idle_stop(d->host->loop, &i->more);
}

static bool i2c_sims_same(const struct config_i2c *a, const struct config_i2c *b)
{
	if (a->nsims != b->nsims)
		return false;
	for (unsigned k = 0; k < a->nsims && k < CONFIG_I2C_SIMS; k++)
		if (a->sims[k].kind != b->sims[k].kind || a->sims[k].addr != b->sims[k].addr ||
		    strcmp(a->sims[k].file, b->sims[k].file) != 0)
			return false;
	return true;
}

/*
 * SIGHUP: the allow list applies at once (revoking access needs no restart); the backends are
 * opened once, so a changed adapter or sim list is refused as a whole.
 */
static int i2c_reconfigure(struct vdev *d, const struct config_device *cfg)
{
	struct i2c_dev *i = i2c_of(d);
	const struct config_i2c *c = &cfg->u.i2c;

	if (strcmp(c->adapter, i->adapter) != 0 || !i2c_sims_same(c, &i->cfg_sims)) {
		log_warn("%s: adapter and sim take effect only at restart", d->name);
		return -EOPNOTSUPP;
	}
	i->allow_set = c->allow_set;
	memcpy(i->allow, c->allow, sizeof(i->allow));
	return 0;
}

static int i2c_open_adapter(struct i2c_dev *i, const char *path)
{
	snprintf(i->adapter, sizeof(i->adapter), "%s", path);
	i->fd = open(path, O_RDWR | O_CLOEXEC);
	if (i->fd < 0) {
		log_err("%s: adapter %s: %s", i->vdev.name, path, strerror(errno));
		return -errno;
	}
	if (ioctl(i->fd, I2C_FUNCS, &i->funcs) < 0) {
		int err = -errno;

		log_err("%s: adapter %s: I2C_FUNCS: %s", i->vdev.name, path, strerror(-err));
		return err;
	}
	if (!(i->funcs & I2C_FUNC_I2C))
		log_notice("%s: adapter %s has no plain I2C transfers: serving SMBus-shaped "
			   "requests only", i->vdev.name, path);
	return 0;
}

/*
 * An EEPROM's contents are state the guest observes: they outlive the process in the state
 * file (vdev_persist()), so that a write acknowledged just before a crash, and not yet in the
 * EEPROM's own file (saves are coalesced), is still there for the next instance.
 */
static void i2c_keep_eeprom(struct i2c_dev *i, uint16_t addr)
{
	struct i2c_sim_eeprom_rec *rec;
	char what[32];
	bool adopted;

	snprintf(what, sizeof(what), "eeprom@0x%02x", addr);
	rec = vdev_persist(&i->vdev, what, sizeof(*rec), &adopted);
	if (rec)
		i2c_sim_keep_eeprom(i->sim, addr, rec, adopted && i->vdev.adopted);
}

static int i2c_add_sims(struct i2c_dev *i, const struct config_i2c *c)
{
	int err;

	i->sim = i2c_sim_bus_new(i->vdev.name);
	if (!i->sim)
		return -ENOMEM;
	for (unsigned k = 0; k < c->nsims && k < CONFIG_I2C_SIMS; k++) {
		err = i2c_sim_add(i->sim, &c->sims[k]);
		if (err)
			return err;
		if (c->sims[k].kind == I2C_SIM_EEPROM)
			i2c_keep_eeprom(i, c->sims[k].addr);
	}
	return 0;
}

static int i2c_setup(struct i2c_dev *i, const struct config_i2c *c)
{
	int err = 0;

	i->allow_set = c->allow_set;
	memcpy(i->allow, c->allow, sizeof(i->allow));
	i->cfg_sims.nsims = c->nsims;
	memcpy(i->cfg_sims.sims, c->sims, sizeof(c->sims));
	if (c->nsims)
		err = i2c_add_sims(i, c);
	if (!err && c->adapter[0])
		err = i2c_open_adapter(i, c->adapter);
	if (!err && !i->sim && i->fd < 0)
		log_notice("%s: no adapter and no simulated clients: every address NACKs",
			   i->vdev.name);
	return err;
}

static void i2c_free(struct i2c_dev *i)
{
	if (i->fd >= 0)
		close(i->fd);
	i2c_sim_bus_free(i->sim);
	vdev_fini(&i->vdev);
	free(i);
}

static int i2c_create(struct vdev_host *host, const struct config_device *cfg, struct vdev **out)
{
	struct i2c_dev *i = calloc(1, sizeof(*i));
	char name[80];
	int err;

	if (!i)
		return -ENOMEM;
	i->fd = -1;
	snprintf(name, sizeof(name), "i2c%s%s", cfg && cfg->name[0] ? " " : "",
		 cfg ? cfg->name : "");
	err = vdev_init(&i->vdev, &vdev_i2c_ops, host, name, 1, I2C_QUEUE_MAX);
	if (err < 0) {
		log_err("%s: cannot initialise: %s", name, strerror(-err));
		free(i);
		return err;
	}
	i->vdev.host_features = VIRTIO_BIT(VIRTIO_I2C_F_ZERO_LENGTH_REQUEST);
	ev_idle_init(&i->more, i2c_more_cb);
	ev_timer_init(&i->save, i2c_save_cb, 0., 0.);
	err = cfg ? i2c_setup(i, &cfg->u.i2c) : 0;
	if (err < 0) {
		i2c_free(i);
		return err;
	}
	*out = &i->vdev;
	return 0;
}

static void i2c_destroy(struct vdev *d)
{
	struct i2c_dev *i = i2c_of(d);

	if (d->host->loop) {
		ev_idle_stop(d->host->loop, &i->more);
		ev_timer_stop(d->host->loop, &i->save);
	}
	i2c_free(i);   /* saves what is still pending */
}

const struct vdev_ops vdev_i2c_ops = {
	.type = "i2c",
	.device_id = I2C_DEVICE_ID,
	.create = i2c_create,
	.features_ok = i2c_features_ok,
	.reset = i2c_reset,
	.queue_notify = i2c_queue_notify,
	.reconfigure = i2c_reconfigure,
	.destroy = i2c_destroy,
};
