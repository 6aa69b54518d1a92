/*
 * virtio-blk (device id 2) on a raw image file or a host block device, with io_uring.
 *
 * One io_uring per device. A QueueNotify pops up to VQ_BUDGET chains, turns each into one or two
 * SQEs and submits them with a single io_uring_submit(). The ring signals an eventfd; its ev_io
 * on the host loop reaps every CQE present, completes the requests and calls vdev_used() once
 * per touched queue, so one interrupt covers a batch.
 *
 * Durability: FLUSH is an fdatasync, which covers every write completed before it; when writes
 * are still in flight it is queued with IOSQE_IO_DRAIN, so it covers those too. In writethrough
 * mode (no FLUSH negotiated, or the driver cleared `writeback`) writes carry RWF_DSYNC and
 * discard / write-zeroes are followed by a linked fdatasync. Acknowledged writes live in the kernel (page
 * cache or device), never in this process, so a daemon exit loses nothing acknowledged.
 *
 * Lone requests inline: a buffered read or write that finds no other chain behind it and nothing
 * queued for the ring is tried at once with preadv2 / pwritev2 and RWF_NOWAIT, which completes
 * from the page cache or fails with EAGAIN instead of blocking; only then does it go to io_uring.
 * One system call instead of io_uring_enter plus the completion eventfd's wake-up and read, and
 * no io_uring worker. Batches (more than one chain per wake-up) stay one io_uring_submit(). A
 * backend that refuses RWF_NOWAIT (EOPNOTSUPP: tmpfs, ext4's buffered writes) is not asked again
 * for that direction. O_DIRECT never goes inline: RWF_NOWAIT would still wait for the device.
 * Misses in a row (a cold cache) make the next 1, 2, 4 ... 64 lone requests skip the try.
 *
 * NBD (nbd = URI): the same requests go to devices/blk_nbd.c instead of the ring, each through a
 * bounce buffer (libnbd wants one contiguous buffer per command); its completions come back
 * through blk_nbd_done() and one blk_completed() per batch, like the ring's. See that file for
 * reconnects, io_timeout and flushes across a reconnect. Ceph RBD (rbd = POOL/IMAGE) is the
 * same shape with devices/blk_rbd.c as the engine; both are "remote" disks below.
 *
 * Guest input: every header is copied once, then checked; every request gets a status byte
 * when the chain has a writable byte to hold one. Requests in flight at a reset are stale (epoch
 * check): the reset waits for them, they are dropped without touching the guest's rings.
 */
#include <endian.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "devices/blk.h"
#include "devices/blk_nbd.h"
#include "devices/blk_rbd.h"
#include "devices/iov.h"
#include "lib/testpoint.h"

#define BLK_SIZE_MAX        (1u << 20)      /* largest segment we advertise */
#define BLK_MAX_DWZ_SECTORS (1u << 22)      /* 2 GiB per discard / write-zeroes */
#define BLK_BOUNCE_BUDGET   (64u << 20)     /* bounce bytes in flight per device */
#define BLK_POOL_SLOTS      32u             /* registered bounce slots (cache = none) ... */
#define BLK_POOL_SLOT       (128u << 10)    /* ... of this size: 4 MiB, pinned once */
#define BLK_RESET_WAIT_MS   5000            /* how long a reset waits for in-flight I/O */
#define BLK_DESTROY_WAIT_MS 10000           /* and teardown, before it gives the memory up */
#define BLK_MAX_QUEUES      16u
#define BLK_DEF_QUEUE_SIZE  256u
#define BLK_TAG_MAIN        0u              /* user_data low bits: which SQE of a request */
#define BLK_TAG_SYNC        1u
#define BLK_TAG_MASK        3u
#define BLK_REQ_IOV         VQ_ELEM_IOV     /* requests of at most this many buffers are reused */

struct blk_dev {
	struct vdev vdev;
	char path[CONFIG_PATH_MAX];
	int fd;
	bool is_bdev, readonly, direct;
	bool no_zero_range, no_punch;       /* fallocate modes the backend refused */
	bool dio_bounce_all;                /* O_DIRECT refused guest mappings (EFAULT) */
	bool lone;                          /* the chain being started has none behind it */
	uint8_t inline_backoff;             /* lone requests to send straight to io_uring ... */
	uint8_t inline_skip;                /* ... and how many of them are left */
	uint64_t capacity;                  /* 512-byte sectors */
	uint32_t lbs, pbs, opt_io;          /* logical / physical block, optimal I/O (bytes) */
	uint32_t dio_mem, dio_off;          /* O_DIRECT alignment of buffers / offsets and lengths */
	uint8_t writeback;                  /* config field; the driver may switch it (WCE) */
	uint8_t *wb_rec;                    /* writeback + 1, for a next instance (or NULL) */
	char serial[VIRTIO_BLK_ID_BYTES];
	struct io_uring ring;
	bool ring_ok;
	int efd;
	ev_io efd_w;                        /* the ring posted completions */
	ev_idle more;                       /* a queue had more than VQ_BUDGET chains */
	uint64_t more_queues;               /* bit q: queue q has leftover work */
	uint64_t touched;                   /* bit q: pushed to queue q, vdev_used() due */
	uint32_t epoch;                     /* bumped at reset: older requests are stale */
	bool resetting;                     /* draining: completions must not pop new work */
	bool reset_waits;                   /* a driver's reset waits for in-flight I/O */
	ev_timer reset_w;                   /* ... at most BLK_RESET_WAIT_MS */
	uint64_t bounce_bytes;
	uint8_t *pool;                      /* BLK_POOL_SLOTS registered buffers, or NULL */
	uint32_t pool_free;                 /* bit i: slot i is free */
	bool pool_failed;                   /* registering it failed: malloc'd bounces only */
	uint32_t writes_inflight;           /* writes, discards, write-zeroes the kernel holds */
	struct blk_req *bwait, **bwait_tail;  /* FIFO of requests waiting for bounce budget */
	/*
	 * Finished requests kept for the next ones instead of a calloc()/free() per request: at
	 * most as many as the queues hold chains (num_queues x queue_max), freed with the device.
	 */
	struct blk_req *spare;
	uint32_t nspare;
	struct blk_nbd *nbd;                /* the NBD engine (nbd = URI), instead of the ring */
	bool remote_ro, remote_trim, remote_zero;  /* what the NBD export or RBD image offered at start */
	struct blk_rbd *rbd;                /* the RBD engine (rbd = POOL/IMAGE), instead */
	struct blk_stats st;
};

struct blk_req {
	struct blk_dev *b;
	struct vq_elem *e;
	uint32_t epoch;
	uint16_t q;
	uint8_t op;
	uint8_t pending;        /* CQEs still expected */
	int res;                /* result of the main SQE */
	int sync_res;           /* result of the linked fdatasync, 0 when none */
	uint64_t off;           /* byte offset */
	uint64_t len;           /* bytes */
	int fmode;              /* fallocate mode in use */
	bool unmap;
	void *bounce;
	int slot;               /* the bounce's slot in the registered pool, or -1 (malloc'd) */
	struct blk_req *next;   /* in the bounce wait list */
	struct blk_nbd_cmd nc;  /* the NBD or RBD engine's command */
	bool answered;          /* answered late; the engine still holds the bounce buffer */
	bool spare_ok;          /* iov has BLK_REQ_IOV entries: it may go back to b->spare */
	unsigned niov;
	struct iovec iov[];     /* the data part of the chain */
};

static struct blk_dev *blk_of(struct vdev *d)
{
	return container_of(d, struct blk_dev, vdev);
}

/* NBD or RBD: requests go to an engine, always through bounce buffers. */
static bool blk_remote(const struct blk_dev *b)
{
	return b->nbd || b->rbd;
}

static void blk_set_writeback(struct blk_dev *b, uint8_t on)
{
	b->writeback = on;
	if (b->wb_rec)
		*b->wb_rec = (uint8_t)(on + 1);
}

static const char *blk_op_name(unsigned op)
{
	static const char *const names[] = { "read", "write", "flush", "discard", "write-zeroes" };

	return op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}

/* ---- backend ---------------------------------------------------------------------------- */

/* True when dev (or a partition of it) is a mounted file system's device. */
static bool blk_parent_is(unsigned maj, unsigned min, dev_t dev)
{
	char path[96], buf[32];
	unsigned pmaj, pmin;
	FILE *f;

	/* /sys/dev/block/M:m/.. is the whole disk when M:m is a partition. */
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/../dev", maj, min);
	f = fopen(path, "re");
	if (!f)
		return false;
	bool match = fgets(buf, sizeof(buf), f) && sscanf(buf, "%u:%u", &pmaj, &pmin) == 2 &&
		     makedev(pmaj, pmin) == dev;
	fclose(f);
	return match;
}

static bool blk_mounted(dev_t dev)
{
	char line[4096];
	unsigned maj, min;
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%*u %*u %u:%u", &maj, &min) == 2)
			found = makedev(maj, min) == dev || blk_parent_is(maj, min, dev);
	fclose(f);
	return found;
}

static unsigned blk_clamp_align(unsigned v, unsigned dflt)
{
	if (v < 512 || v > 65536 || (v & (v - 1)))
		return dflt;
	return v;
}

static int blk_probe_bdev(struct blk_dev *b)
{
	uint64_t bytes = 0;
	int lbs = 0;
	unsigned pbs = 0, opt = 0;

	if (ioctl(b->fd, BLKGETSIZE64, &bytes) < 0 || ioctl(b->fd, BLKSSZGET, &lbs) < 0) {
		int err = -errno;
		log_err("%s: %s: cannot read the device size: %s", b->vdev.name, b->path,
			strerror(-err));
		return err;
	}
	if (ioctl(b->fd, BLKPBSZGET, &pbs) < 0)
		pbs = 0;
	if (ioctl(b->fd, BLKIOOPT, &opt) < 0)
		opt = 0;
	b->capacity = bytes / VIRTIO_BLK_SECTOR;
	b->lbs = blk_clamp_align((unsigned)lbs, 512);
	b->pbs = blk_clamp_align(pbs, b->lbs);
	b->opt_io = opt;
	b->dio_mem = b->dio_off = b->lbs;
	return 0;
}

static void blk_probe_file(struct blk_dev *b, const struct stat *st)
{
	struct statx sx;

	b->capacity = (uint64_t)st->st_size / VIRTIO_BLK_SECTOR;
	b->dio_mem = b->dio_off = 512;
	if (statx(b->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
	    (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align) {
		b->dio_off = blk_clamp_align(sx.stx_dio_offset_align, 512);
		b->dio_mem = sx.stx_dio_mem_align ? sx.stx_dio_mem_align : b->dio_off;
	}
	/* O_DIRECT offsets must be aligned to dio_off, so that is the guest's logical block. */
	b->lbs = b->direct ? b->dio_off : 512;
	b->pbs = blk_clamp_align((unsigned)st->st_blksize, 4096);
	if (b->pbs < b->lbs)
		b->pbs = b->lbs;
	if (b->pbs > 4096 && b->pbs > b->lbs)
		b->pbs = b->lbs > 4096 ? b->lbs : 4096;
}

/* A block device must be ours alone: not mounted, not claimed (O_EXCL). */
static int blk_check_bdev(struct blk_dev *b, dev_t rdev)
{
	if (blk_mounted(rdev)) {
		log_err("%s: %s is mounted (it or a partition of it); refusing it", b->vdev.name,
			b->path);
		return -EBUSY;
	}
	return 0;
}

static int blk_open(struct blk_dev *b)
{
	struct stat st;
	int flags = (b->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (b->direct ? O_DIRECT : 0);

	if (stat(b->path, &st) < 0) {
		int err = -errno;
		log_err("%s: %s: %s", b->vdev.name, b->path, strerror(-err));
		return err;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		log_err("%s: %s is neither a regular file nor a block device", b->vdev.name,
			b->path);
		return -EINVAL;
	}
	b->is_bdev = S_ISBLK(st.st_mode);
	if (b->is_bdev) {
		int rc = blk_check_bdev(b, st.st_rdev);
		if (rc < 0)
			return rc;
		flags |= O_EXCL;   /* nobody may mount it while we serve it */
	}
	b->fd = open(b->path, flags);
	if (b->fd < 0) {
		int err = -errno;
		log_err("%s: cannot open %s%s: %s", b->vdev.name, b->path,
			b->direct ? " with O_DIRECT (cache = none)" : "", strerror(-err));
		return err;
	}
	if (fstat(b->fd, &st) < 0)
		return -errno;
	if (b->is_bdev)
		return blk_probe_bdev(b);
	blk_probe_file(b, &st);
	return 0;
}

/* Default serial: "xvd-" and 16 hex digits of a hash of the path, stable across restarts. */
static void blk_set_serial(struct blk_dev *b, const char *cfg_serial)
{
	char tmp[VIRTIO_BLK_ID_BYTES + 1];
	uint64_t h = 1469598103934665603ull;

	memset(b->serial, 0, sizeof(b->serial));
	if (cfg_serial && cfg_serial[0]) {
		memcpy(b->serial, cfg_serial, strnlen(cfg_serial, VIRTIO_BLK_ID_BYTES));
		return;
	}
	for (const char *p = b->path; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	snprintf(tmp, sizeof(tmp), "xvd-%016" PRIx64, h);
	memcpy(b->serial, tmp, VIRTIO_BLK_ID_BYTES);
}

/* ---- io_uring ---------------------------------------------------------------------------- */

static void blk_reap(struct blk_dev *b);

static void blk_submit(struct blk_dev *b)
{
	if (!b->ring_ok || !io_uring_sq_ready(&b->ring))
		return;
	int rc = io_uring_submit(&b->ring);

	testpoint("blk.submitted");
	b->st.submits++;
	/* -EBUSY / -EAGAIN: the SQEs stay queued; the next reap submits them again. */
	if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
		vdev_log(&b->vdev, VDEV_LOG_BACKEND, LOG_ERR, "%s: io_uring_submit: %s",
			 b->vdev.name, strerror(-rc));
}

/* n free SQEs in a row (a linked pair must not straddle a submit), or NULL. */
static struct io_uring_sqe *blk_sqe(struct blk_dev *b, unsigned n)
{
	if (io_uring_sq_space_left(&b->ring) < n)
		blk_submit(b);
	if (io_uring_sq_space_left(&b->ring) < n)
		return NULL;
	return io_uring_get_sqe(&b->ring);
}

static void blk_efd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct blk_dev *b = container_of(w, struct blk_dev, efd_w);
	uint64_t v;

	(void)loop;
	(void)revents;
	/* Clear the counter first: CQEs posted after this read signal it again. */
	if (read(b->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		vdev_log(&b->vdev, VDEV_LOG_BACKEND, LOG_ERR, "%s: eventfd read: %s", b->vdev.name,
			 strerror(errno));
	blk_reap(b);
}

static unsigned blk_ring_entries(unsigned queues, unsigned qsize)
{
	unsigned want = queues * qsize, n = 64;

	while (n < want && n < 4096)
		n <<= 1;
	return n;
}

static int blk_ring_init(struct blk_dev *b, unsigned queues, unsigned qsize)
{
	struct io_uring_params p = { 0 };
	unsigned entries = blk_ring_entries(queues, qsize);
	int rc;

	/* Room for two CQEs per request in flight, so completions never overflow. */
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = 4 * entries;
	rc = io_uring_queue_init_params(entries, &b->ring, &p);
	if (rc < 0) {
		log_err("%s: io_uring setup: %s", b->vdev.name, strerror(-rc));
		return rc;
	}
	b->ring_ok = true;
	b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->efd < 0)
		return -errno;
	rc = io_uring_register_eventfd(&b->ring, b->efd);
	if (rc < 0) {
		log_err("%s: io_uring eventfd: %s", b->vdev.name, strerror(-rc));
		return rc;
	}
	ev_io_init(&b->efd_w, blk_efd_cb, b->efd, EV_READ);
	ev_io_start(b->vdev.host->loop, &b->efd_w);
	return 0;
}

/* ---- completing requests ----------------------------------------------------------------- */

/*
 * The status byte is the last byte of the writable part (checked non-empty at pop): the last
 * byte of the last buffer, since the virtqueue leaves zero-length buffers out of the iovec.
 */
static void blk_put_status(struct vq_elem *e, uint8_t status)
{
	const struct iovec *last = e->n_in ? &e->iov[e->n_out + e->n_in - 1] : NULL;

	if (last && last->iov_len)
		((uint8_t *)last->iov_base)[last->iov_len - 1] = status;
	else
		iov_from_buf(&e->iov[e->n_out], e->n_in, e->in_len - 1, &status, 1);
}

static void blk_complete(struct blk_dev *b, struct vq_elem *e, uint8_t status, uint32_t written)
{
	unsigned q = e->vq->index;

	if (status == VIRTIO_BLK_S_IOERR)
		b->st.errors++;
	blk_put_status(e, status);
	vq_push(e, written);    /* frees e */
	b->touched |= UINT64_C(1) << q;
}

static void blk_bounce_resume(struct blk_dev *b);

/* Keep r (its bounce already given back) for a next request, or free it past the bound. */
static void blk_req_release(struct blk_dev *b, struct blk_req *r)
{
	if (r->spare_ok && b->nspare < (uint32_t)b->vdev.num_queues * b->vdev.queue_max) {
		r->next = b->spare;
		b->spare = r;
		b->nspare++;
		return;
	}
	free(r);
}

static void blk_spare_clear(struct blk_dev *b)
{
	while (b->spare) {
		struct blk_req *r = b->spare;

		b->spare = r->next;
		free(r);
	}
	b->nspare = 0;
}

static void blk_req_free(struct blk_dev *b, struct blk_req *r)
{
	bool had_bounce = r->bounce != NULL;

	if (had_bounce && r->slot >= 0) {
		b->pool_free |= UINT32_C(1) << r->slot;
	} else if (had_bounce) {
		b->bounce_bytes -= r->len;
		free(r->bounce);
	}
	blk_req_release(b, r);
	if (had_bounce)
		blk_bounce_resume(b);
}

static bool blk_writethrough(struct blk_dev *b)
{
	/* Without FLUSH the driver cannot ask for durability, so every write must be durable. */
	if (!vdev_has(&b->vdev, VIRTIO_BLK_F_FLUSH))
		return true;
	return vdev_has(&b->vdev, VIRTIO_BLK_F_CONFIG_WCE) && !b->writeback;
}

static int blk_submit_req(struct blk_dev *b, struct blk_req *r);

/*
 * fallocate said EOPNOTSUPP: try the other mode once. Discard is a hint, so a backend that
 * cannot discard completes it successfully. Returns true when the request was resubmitted.
 */
static bool blk_dwz_retry(struct blk_dev *b, struct blk_req *r)
{
	int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	int zero = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;

	if (r->op != BLK_OP_WZ || blk_remote(b))
		return false;
	if (r->fmode == zero)
		b->no_zero_range = true;
	else
		b->no_punch = true;
	int next = r->fmode == zero ? punch : zero;

	if ((next == zero && b->no_zero_range) || (next == punch && b->no_punch))
		return false;
	r->fmode = next;
	if (blk_submit_req(b, r) < 0)
		return false;   /* completes with the EOPNOTSUPP it has */
	r->res = r->sync_res = 0;   /* the CQEs set them again; none is reaped before we return */
	return true;
}

static uint8_t blk_req_status(struct blk_dev *b, struct blk_req *r)
{
	int err = r->res < 0 ? r->res : r->sync_res;

	if (r->op == BLK_OP_DISCARD && r->res == -EOPNOTSUPP && r->sync_res >= 0)
		return VIRTIO_BLK_S_OK;
	if (r->op == BLK_OP_WZ && r->res == -EOPNOTSUPP)
		return VIRTIO_BLK_S_UNSUPP;
	if (err == 0 && (r->op == BLK_OP_READ || r->op == BLK_OP_WRITE) &&
	    (uint64_t)r->res != r->len)
		err = -EIO;   /* short transfer: the image shrank under us */
	if (err == 0)
		return VIRTIO_BLK_S_OK;
	vdev_log(&b->vdev, VDEV_LOG_BACKEND, LOG_ERR,
		 "%s: %s of %" PRIu64 " bytes at sector %" PRIu64 " failed: %s", b->vdev.name,
		 blk_op_name(r->op), r->len, r->off / VIRTIO_BLK_SECTOR, strerror(-err));
	return VIRTIO_BLK_S_IOERR;
}

static int blk_bounce_or_wait(struct blk_dev *b, struct blk_req *r);
static void blk_start_req(struct blk_dev *b, struct blk_req *r);

/*
 * O_DIRECT pins the buffers' pages; mappings the kernel cannot pin (foreign mappings are
 * VM_IO|VM_PFNMAP on some dom0 kernels) fail with EFAULT. Then every request of this disk goes
 * through a bounce buffer, starting with this one. Returns true when r was resubmitted.
 */
static bool blk_dio_fallback(struct blk_dev *b, struct blk_req *r)
{
	if (r->res != -EFAULT || !b->direct || r->bounce ||
	    (r->op != BLK_OP_READ && r->op != BLK_OP_WRITE))
		return false;
	if (!b->dio_bounce_all)
		log_warn("%s: O_DIRECT cannot use guest memory here (EFAULT); bouncing every request",
			 b->vdev.name);
	b->dio_bounce_all = true;
	r->res = r->sync_res = 0;
	int rc = blk_bounce_or_wait(b, r);

	if (rc < 0) {
		r->res = -EFAULT;
		return false;
	}
	if (rc == 0)
		blk_start_req(b, r);
	return true;
}

static void blk_req_done(struct blk_dev *b, struct blk_req *r)
{
	uint32_t written = 1;

	if (r->epoch != b->epoch) {
		/* Reset since: the guest's rings and buffers are no longer ours to touch. */
		if (r->e)
			vq_drop(r->e);
		blk_req_free(b, r);
		return;
	}
	if (r->op == BLK_OP_WZ && r->res == -EOPNOTSUPP && blk_dwz_retry(b, r))
		return;
	if (blk_dio_fallback(b, r))
		return;
	uint8_t status = blk_req_status(b, r);

	if (status == VIRTIO_BLK_S_OK && r->op == BLK_OP_READ) {
		if (r->bounce)
			iov_from_buf(r->iov, r->niov, 0, r->bounce, r->len);
		written += (uint32_t)r->len;
	}
	blk_complete(b, r->e, status, written);
	blk_req_free(b, r);
}

static bool blk_op_writes(unsigned op)
{
	return op == BLK_OP_WRITE || op == BLK_OP_DISCARD || op == BLK_OP_WZ;
}

static void blk_cqe(struct blk_dev *b, const struct io_uring_cqe *cqe)
{
	uintptr_t ud = (uintptr_t)io_uring_cqe_get_data(cqe);
	struct blk_req *r = (struct blk_req *)(ud & ~(uintptr_t)BLK_TAG_MASK);

	if (!r)
		return;   /* the reset's cancel request */
	if ((ud & BLK_TAG_MASK) == BLK_TAG_SYNC)
		r->sync_res = cqe->res == -ECANCELED ? 0 : cqe->res;
	else
		r->res = cqe->res;
	if (--r->pending)
		return;
	b->st.inflight--;
	if (blk_op_writes(r->op))
		b->writes_inflight--;
	blk_req_done(b, r);
}

static void blk_used(struct blk_dev *b)
{
	uint64_t t = b->touched;

	b->touched = 0;
	for (unsigned q = 0; t; q++, t >>= 1)
		if ((t & 1) && q < b->vdev.num_queues)
			vdev_used(&b->vdev, &b->vdev.vqs[q]);
}

static bool blk_process(struct blk_dev *b, unsigned q);
static void blk_more(struct blk_dev *b, unsigned q);
static void blk_reset_check(struct blk_dev *b);
static void blk_completed(struct blk_dev *b);

static void blk_reap(struct blk_dev *b)
{
	struct io_uring_cqe *cqe;
	unsigned n = 0;

	while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
		struct io_uring_cqe copy = *cqe;

		/* Copied and marked seen first: completing a request may queue new SQEs. */
		io_uring_cqe_seen(&b->ring, cqe);
		blk_cqe(b, &copy);
		n++;
	}
	if (n)
		b->st.reaps++;
	blk_submit(b);   /* write-zeroes retries, or SQEs a busy ring refused */
	blk_completed(b);
}

/* After a batch of completions: one vdev_used() per queue, then chains added meanwhile. */
static void blk_completed(struct blk_dev *b)
{
	blk_reset_check(b);
	uint64_t done = b->touched;

	blk_used(b);
	/*
	 * Chains the driver added since (its kick may still be on the way) start now. A peek
	 * first: blk_process() ended with kicks re-armed (or left the rest to blk_more), so an
	 * empty ring needs nothing from it.
	 */
	for (unsigned q = 0; done && !b->resetting; q++, done >>= 1)
		if ((done & 1) && q < b->vdev.num_queues && vq_has_work(&b->vdev.vqs[q]) &&
		    blk_process(b, q))
			blk_more(b, q);
}

/* ---- the NBD and RBD engines' completions ------------------------------------------------- */

/* Past io_timeout, the engine still holding the buffer: IOERR now, the memory stays. */
static void blk_req_answer_late(struct blk_dev *b, struct blk_req *r)
{
	struct vq_elem *e = r->e;

	r->answered = true;
	r->e = NULL;
	if (e && r->epoch == b->epoch)
		blk_complete(b, e, VIRTIO_BLK_S_IOERR, 1);
	else if (e)
		vq_drop(e);
}

static void blk_nbd_done(struct blk_nbd_cmd *c, void *opaque)
{
	struct blk_dev *b = opaque;
	struct blk_req *r = container_of(c, struct blk_req, nc);

	if (r->answered) {   /* the engine let go of a request answered late */
		blk_req_free(b, r);
		return;
	}
	b->st.inflight--;
	if (blk_op_writes(r->op))
		b->writes_inflight--;
	/* The io_uring path's result convention: bytes moved, or -errno. */
	r->res = c->res < 0 ? c->res :
		 r->op == BLK_OP_READ || r->op == BLK_OP_WRITE ? (int)r->len : 0;
	r->sync_res = 0;
	if (c->late)
		blk_req_answer_late(b, r);
	else
		blk_req_done(b, r);   /* stale ones (a reset since) are dropped there */
}

static void blk_nbd_batch(void *opaque)
{
	blk_completed(opaque);
}

/* A reset: the guest's buffers go back now; the engine only holds our bounce buffers. */
static void blk_nbd_forget(struct blk_nbd_cmd *c, void *opaque)
{
	struct blk_req *r = container_of(c, struct blk_req, nc);

	(void)opaque;
	if (r->e) {
		vq_drop(r->e);
		r->e = NULL;
	}
}

/* Every command the NBD or RBD engine holds (not answered yet). */
static void blk_remote_foreach(struct blk_dev *b, void (*fn)(struct blk_nbd_cmd *c, void *opaque))
{
	if (b->rbd)
		blk_rbd_foreach(b->rbd, fn, NULL);
	else
		blk_nbd_foreach(b->nbd, fn, NULL);
}

static void blk_nbd_release(struct blk_nbd_cmd *c, void *opaque)
{
	blk_nbd_forget(c, opaque);
	free(container_of(c, struct blk_req, nc)->bounce);
	free(container_of(c, struct blk_req, nc));
}

/* ---- starting requests ------------------------------------------------------------------- */

static struct blk_req *blk_req_new(struct blk_dev *b, struct vq_elem *e, unsigned op)
{
	unsigned cap = (unsigned)e->n_out + e->n_in;
	bool small = cap <= BLK_REQ_IOV;
	struct blk_req *r = small ? b->spare : NULL;

	if (r) {
		b->spare = r->next;
		b->nspare--;
	} else {
		r = malloc(sizeof(*r) + (small ? BLK_REQ_IOV : cap) * sizeof(struct iovec));
		if (!r)
			return NULL;
	}
	/* The iovec is filled by whoever uses it (iov_slice), up to niov. */
	memset(r, 0, sizeof(*r));
	r->spare_ok = small;
	r->b = b;
	r->e = e;
	r->slot = -1;
	r->epoch = b->epoch;
	r->q = e->vq->index;
	r->op = (uint8_t)op;
	return r;
}

static void blk_prep_rw(struct blk_dev *b, struct blk_req *r, struct io_uring_sqe *sqe)
{
	int flags = r->op == BLK_OP_WRITE && blk_writethrough(b) ? RWF_DSYNC : 0;

	if (r->slot >= 0 && r->op == BLK_OP_READ)
		io_uring_prep_read_fixed(sqe, b->fd, r->bounce, (unsigned)r->len, r->off, r->slot);
	else if (r->slot >= 0)
		io_uring_prep_write_fixed(sqe, b->fd, r->bounce, (unsigned)r->len, r->off, r->slot);
	else if (r->bounce && r->op == BLK_OP_READ)
		io_uring_prep_read(sqe, b->fd, r->bounce, (unsigned)r->len, r->off);
	else if (r->bounce)
		io_uring_prep_write(sqe, b->fd, r->bounce, (unsigned)r->len, r->off);
	else if (r->op == BLK_OP_READ)
		io_uring_prep_readv(sqe, b->fd, r->iov, r->niov, r->off);
	else
		io_uring_prep_writev(sqe, b->fd, r->iov, r->niov, r->off);
	sqe->rw_flags = flags;
}

/* The NBD or RBD engine takes every request (NBD holds them while it reconnects). */
static int blk_nbd_start(struct blk_dev *b, struct blk_req *r)
{
	r->nc = (struct blk_nbd_cmd){ .op = r->op, .fua = blk_writethrough(b), .unmap = r->unmap,
				      .off = r->off, .len = r->len, .buf = r->bounce };
	b->st.inflight++;
	if (blk_op_writes(r->op))
		b->writes_inflight++;
	b->st.submits++;
	if (b->rbd)
		blk_rbd_submit(b->rbd, &r->nc);
	else
		blk_nbd_submit(b->nbd, &r->nc);
	return 0;
}

/* Queue the request's SQEs (main one, plus a linked fdatasync when it must be durable). */
static int blk_submit_req(struct blk_dev *b, struct blk_req *r)
{
	if (blk_remote(b))
		return blk_nbd_start(b, r);
	bool sync = (r->op == BLK_OP_DISCARD || r->op == BLK_OP_WZ) && blk_writethrough(b);
	struct io_uring_sqe *sqe = blk_sqe(b, sync ? 2 : 1);

	if (!sqe)
		return -EBUSY;
	if (r->op == BLK_OP_FLUSH) {
		io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
		/*
		 * Writes still in flight: start only after everything submitted before has
		 * completed, so the flush covers them too. With none in flight the fdatasync
		 * alone covers every completed write, and reads need not wait behind it.
		 */
		if (b->writes_inflight) {
			sqe->flags |= IOSQE_IO_DRAIN;
			b->st.drains++;
		}
	} else if (r->op == BLK_OP_DISCARD || r->op == BLK_OP_WZ) {
		io_uring_prep_fallocate(sqe, b->fd, r->fmode, r->off, r->len);
	} else {
		blk_prep_rw(b, r, sqe);
	}
	io_uring_sqe_set_data(sqe, (void *)((uintptr_t)r | BLK_TAG_MAIN));
	r->pending = 1;
	if (sync) {
		sqe->flags |= IOSQE_IO_LINK;
		sqe = io_uring_get_sqe(&b->ring);
		io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data(sqe, (void *)((uintptr_t)r | BLK_TAG_SYNC));
		r->pending = 2;
	}
	b->st.inflight++;
	if (blk_op_writes(r->op))
		b->writes_inflight++;
	return 0;
}

/* Start r, or complete it with IOERR when the ring has no room. */
static void blk_start_req(struct blk_dev *b, struct blk_req *r)
{
	if (blk_submit_req(b, r) == 0)
		return;
	vdev_log(&b->vdev, VDEV_LOG_BACKEND, LOG_ERR, "%s: submission queue full", b->vdev.name);
	blk_complete(b, r->e, VIRTIO_BLK_S_IOERR, 1);
	blk_req_free(b, r);
}

static bool blk_range_ok(const struct blk_dev *b, uint64_t sector, uint64_t nsect)
{
	return sector <= b->capacity && nsect <= b->capacity - sector;
}

/* O_DIRECT takes the guest's buffers as they are only when each is aligned. */
static bool blk_dio_aligned(const struct blk_dev *b, const struct blk_req *r)
{
	for (unsigned i = 0; i < r->niov; i++)
		if ((uintptr_t)r->iov[i].iov_base % b->dio_mem || r->iov[i].iov_len % b->dio_off)
			return false;
	return true;
}

/*
 * The registered bounce pool, made at a direct disk's first bounce (on Xen: its first request,
 * which fails with EFAULT): BLK_POOL_SLOTS buffers the kernel pins once, so a bounced request
 * costs one copy and a READ_FIXED / WRITE_FIXED, no allocation and no page pinning per request.
 * False (and never tried again) when the kernel refuses: bounces are malloc'd then.
 */
static bool blk_pool_ready(struct blk_dev *b)
{
	struct iovec iov[BLK_POOL_SLOTS];
	void *mem;
	int rc;

	if (b->pool || b->pool_failed || !b->direct || !b->ring_ok)
		return b->pool != NULL;
	b->pool_failed = true;
	if (posix_memalign(&mem, 4096, (size_t)BLK_POOL_SLOTS * BLK_POOL_SLOT))
		return false;
	for (unsigned i = 0; i < BLK_POOL_SLOTS; i++)
		iov[i] = (struct iovec){ (uint8_t *)mem + (size_t)i * BLK_POOL_SLOT, BLK_POOL_SLOT };
	rc = io_uring_register_buffers(&b->ring, iov, BLK_POOL_SLOTS);
	if (rc < 0) {
		log_info("%s: no registered bounce buffers (%s): each bounce is allocated",
			 b->vdev.name, strerror(-rc));
		free(mem);
		return false;
	}
	b->pool = mem;
	b->pool_free = (uint32_t)((UINT64_C(1) << BLK_POOL_SLOTS) - 1);
	b->pool_failed = false;
	return true;
}

/* A free pool slot for r (0), or -ENOSPC: none free, r too large or no pool. */
static int blk_bounce_slot(struct blk_dev *b, struct blk_req *r)
{
	if (r->len > BLK_POOL_SLOT || !blk_pool_ready(b) || !b->pool_free)
		return -ENOSPC;
	r->slot = __builtin_ctz(b->pool_free);
	b->pool_free &= ~(UINT32_C(1) << r->slot);
	r->bounce = b->pool + (size_t)r->slot * BLK_POOL_SLOT;
	b->st.pool_bounces++;
	return 0;
}

static int blk_bounce(struct blk_dev *b, struct blk_req *r)
{
	if (blk_bounce_slot(b, r) == 0) {
		/* Not in bounce_bytes: the pool is there anyway, and bounded by its size. */
	} else if (r->len > BLK_BOUNCE_BUDGET - b->bounce_bytes) {
		return -EAGAIN;
	} else if (posix_memalign(&r->bounce, 4096, r->len)) {
		r->bounce = NULL;
		return -ENOMEM;
	} else {
		b->bounce_bytes += r->len;
	}
	b->st.bounces++;
	if (r->op == BLK_OP_WRITE)
		iov_to_buf(r->iov, r->niov, 0, r->bounce, r->len);
	return 0;
}

/*
 * A bounce buffer for r now (0), or r queued until bounce memory in flight drops below the
 * budget (1), so a burst of unaligned requests waits instead of failing; < 0 when r alone
 * exceeds the budget or memory is short.
 */
static int blk_bounce_or_wait(struct blk_dev *b, struct blk_req *r)
{
	if (r->len > BLK_BOUNCE_BUDGET)
		return -EFBIG;
	if (!b->bwait) {
		int rc = blk_bounce(b, r);

		if (rc != -EAGAIN)
			return rc;
	}
	r->next = NULL;
	*b->bwait_tail = r;
	b->bwait_tail = &r->next;
	return 1;
}

/* Bounce memory was freed: start the waiting requests that fit now, in order. */
static void blk_bounce_resume(struct blk_dev *b)
{
	struct blk_req *r;

	while ((r = b->bwait) && r->len <= BLK_BOUNCE_BUDGET - b->bounce_bytes) {
		b->bwait = r->next;
		if (!b->bwait)
			b->bwait_tail = &b->bwait;
		if (blk_bounce(b, r) < 0) {
			blk_complete(b, r->e, VIRTIO_BLK_S_IOERR, 1);
			blk_req_free(b, r);
			continue;
		}
		blk_start_req(b, r);
	}
}

/* Reset or teardown: waiting requests are dropped like any other stale request. */
/*
 * Requests popped but still waiting for bounce space were never started: dropped on a reset,
 * or failed with IOERR (returned to the guest) when the daemon stops and the guest stays.
 */
static void blk_bounce_flush_waiters(struct blk_dev *b, bool fail)
{
	struct blk_req *r;

	while ((r = b->bwait)) {
		b->bwait = r->next;
		if (fail)
			blk_complete(b, r->e, VIRTIO_BLK_S_IOERR, 1);
		else
			vq_drop(r->e);
		blk_req_release(b, r);
	}
	b->bwait_tail = &b->bwait;
}

static void blk_bad(struct blk_dev *b, struct vq_elem *e, uint8_t status, const char *why,
		    uint64_t sector)
{
	vdev_log(&b->vdev, VDEV_LOG_REQUEST, LOG_WARNING,
		 "%s: request at sector %" PRIu64 " rejected: %s", b->vdev.name, sector, why);
	blk_complete(b, e, status, 1);
}

/*
 * A lone buffered request tried at once without blocking (RWF_NOWAIT): true when r is done
 * (completed and freed). False leaves r to io_uring, whole: a short read is read again, a short
 * write written again with the same bytes.
 */
static bool blk_try_inline(struct blk_dev *b, struct blk_req *r)
{
	bool write = r->op == BLK_OP_WRITE;
	unsigned dir = write ? BLK_NOWAIT_WRITE : BLK_NOWAIT_READ;
	ssize_t n;

	if (!b->lone || b->direct || blk_remote(b) || r->bounce || (b->st.nowait_off & dir) ||
	    (write && blk_writethrough(b)))   /* RWF_DSYNC waits for the device */
		return false;
	if (b->inline_skip) {
		b->inline_skip--;
		return false;
	}
	n = write ? pwritev2(b->fd, r->iov, (int)r->niov, (off_t)r->off, RWF_NOWAIT) :
		    preadv2(b->fd, r->iov, (int)r->niov, (off_t)r->off, RWF_NOWAIT);
	if (n < 0 && errno == EOPNOTSUPP) {
		b->st.nowait_off |= (uint8_t)dir;
		log_info("%s: %s refuses RWF_NOWAIT %ss: those go to io_uring", b->vdev.name,
			 b->path, blk_op_name(r->op));
		return false;
	}
	if (n != (ssize_t)r->len) {
		/*
		 * A cold cache would cost a wasted system call per request: after each miss in a
		 * row, twice as many lone requests (at most 64) skip the try.
		 */
		b->st.inline_punted++;
		b->inline_backoff = b->inline_backoff ? (uint8_t)(b->inline_backoff * 2) : 1;
		if (b->inline_backoff > 64)
			b->inline_backoff = 64;
		b->inline_skip = b->inline_backoff;
		return false;
	}
	b->inline_backoff = 0;
	testpoint("blk.submitted");     /* done by the kernel, not yet returned to the guest */
	b->st.inline_done++;
	r->res = (int)n;
	blk_req_done(b, r);
	return true;
}

static void blk_start_rw(struct blk_dev *b, struct vq_elem *e, bool write, uint64_t sector)
{
	const struct iovec *src = write ? e->iov : &e->iov[e->n_out];
	unsigned nsrc = write ? e->n_out : e->n_in;
	uint64_t len = write ? e->out_len - sizeof(struct virtio_blk_outhdr) : e->in_len - 1u;

	if (write && b->readonly)
		return blk_bad(b, e, VIRTIO_BLK_S_IOERR, "write to a read-only disk", sector);
	if (len % VIRTIO_BLK_SECTOR)
		return blk_bad(b, e, VIRTIO_BLK_S_IOERR, "length not a multiple of 512", sector);
	if (!blk_range_ok(b, sector, len / VIRTIO_BLK_SECTOR))
		return blk_bad(b, e, VIRTIO_BLK_S_IOERR, "beyond the end of the disk", sector);
	if (len == 0)
		return blk_complete(b, e, VIRTIO_BLK_S_OK, 1);
	if (b->direct && (sector * VIRTIO_BLK_SECTOR) % b->dio_off)
		return blk_bad(b, e, VIRTIO_BLK_S_IOERR, "offset not aligned to the block size",
			       sector);
	struct blk_req *r = blk_req_new(b, e, write ? BLK_OP_WRITE : BLK_OP_READ);

	if (!r)
		return blk_bad(b, e, VIRTIO_BLK_S_IOERR, "out of memory", sector);
	r->off = sector * VIRTIO_BLK_SECTOR;
	r->len = len;
	int n = iov_slice(src, nsrc, write ? sizeof(struct virtio_blk_outhdr) : 0, len, r->iov,
			  (unsigned)e->n_out + e->n_in);

	r->niov = n < 0 ? 0 : (unsigned)n;
	/*
	 * NBD takes one contiguous buffer per command, and librbd may still write into a read's
	 * buffer after the guest was answered (past io_timeout): always a bounce buffer, in the
	 * budget.
	 */
	bool bounce = blk_remote(b) || (b->direct && (b->dio_bounce_all || !blk_dio_aligned(b, r)));
	int rc = n <= 0 ? -EINVAL : bounce ? blk_bounce_or_wait(b, r) : 0;

	if (rc < 0) {
		blk_req_free(b, r);
		return blk_bad(b, e, VIRTIO_BLK_S_IOERR, "no bounce buffer", sector);
	}
	if (rc == 0 && !blk_try_inline(b, r))
		blk_start_req(b, r);
}

static void blk_start_flush(struct blk_dev *b, struct vq_elem *e)
{
	struct blk_req *r = blk_req_new(b, e, BLK_OP_FLUSH);

	if (!r)
		return blk_bad(b, e, VIRTIO_BLK_S_IOERR, "out of memory", 0);
	blk_start_req(b, r);
}

static void blk_get_id(struct blk_dev *b, struct vq_elem *e)
{
	size_t n = e->in_len - 1u;

	if (n > VIRTIO_BLK_ID_BYTES)
		n = VIRTIO_BLK_ID_BYTES;
	n = iov_from_buf(&e->iov[e->n_out], e->n_in, 0, b->serial, n);
	blk_complete(b, e, VIRTIO_BLK_S_OK, (uint32_t)n + 1);
}

static unsigned blk_reject(const char **why, const char *text, unsigned status)
{
	*why = text;
	return status;
}

/* The one segment of a discard / write-zeroes, copied and checked: 0 when fine, else a status. */
static unsigned blk_dwz_check(struct blk_dev *b, struct vq_elem *e, bool discard,
			      struct virtio_blk_dwz_seg *seg, const char **why)
{
	uint32_t payload = e->out_len - (uint32_t)sizeof(struct virtio_blk_outhdr);

	if (!vdev_has(&b->vdev, discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES))
		return blk_reject(why, "feature not negotiated", VIRTIO_BLK_S_UNSUPP);
	if (b->readonly)
		return blk_reject(why, "read-only disk", VIRTIO_BLK_S_IOERR);
	/* We advertise one segment per request; more is a valid request we do not support. */
	if (payload > sizeof(*seg) && payload % sizeof(*seg) == 0)
		return blk_reject(why, "more than one segment", VIRTIO_BLK_S_UNSUPP);
	if (payload != sizeof(*seg))
		return blk_reject(why, "malformed segment", VIRTIO_BLK_S_IOERR);
	iov_to_buf(e->iov, e->n_out, sizeof(struct virtio_blk_outhdr), seg, sizeof(*seg));
	seg->sector = le64toh(seg->sector);
	seg->num_sectors = le32toh(seg->num_sectors);
	seg->flags = le32toh(seg->flags);
	if ((seg->flags & ~VIRTIO_BLK_DWZ_F_UNMAP) || (discard && seg->flags))
		return blk_reject(why, "unknown flags", VIRTIO_BLK_S_UNSUPP);
	if (seg->num_sectors > BLK_MAX_DWZ_SECTORS)
		return blk_reject(why, "too many sectors", VIRTIO_BLK_S_IOERR);
	if (!blk_range_ok(b, seg->sector, seg->num_sectors))
		return blk_reject(why, "beyond the end of the disk", VIRTIO_BLK_S_IOERR);
	return 0;
}

static int blk_dwz_mode(const struct blk_dev *b, bool discard, bool unmap)
{
	int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	int zero = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;

	/* On a block device, punch is a zero-out that may unmap, zero a zero-out that won't. */
	if (discard)
		return punch;
	if ((unmap && !b->no_punch) || b->no_zero_range)
		return punch;
	return zero;
}

static void blk_start_dwz(struct blk_dev *b, struct vq_elem *e, bool discard)
{
	struct virtio_blk_dwz_seg seg = { 0 };
	const char *why;
	unsigned st = blk_dwz_check(b, e, discard, &seg, &why);

	if (st)
		return blk_bad(b, e, (uint8_t)st, why, seg.sector);
	if (seg.num_sectors == 0)
		return blk_complete(b, e, VIRTIO_BLK_S_OK, 1);
	struct blk_req *r = blk_req_new(b, e, discard ? BLK_OP_DISCARD : BLK_OP_WZ);

	if (!r)
		return blk_bad(b, e, VIRTIO_BLK_S_IOERR, "out of memory", seg.sector);
	r->off = seg.sector * VIRTIO_BLK_SECTOR;
	r->len = (uint64_t)seg.num_sectors * VIRTIO_BLK_SECTOR;
	r->unmap = seg.flags & VIRTIO_BLK_DWZ_F_UNMAP;
	r->fmode = blk_dwz_mode(b, discard, r->unmap);
	blk_start_req(b, r);
}

/* One popped chain: copy the header, check it, start or complete the request. */
static void blk_start(struct blk_dev *b, struct vq_elem *e)
{
	struct virtio_blk_outhdr h;

	b->st.requests++;
	if (e->in_len == 0) {
		/* No byte to put a status in: the driver is broken beyond a per-request error. */
		b->touched |= UINT64_C(1) << e->vq->index;
		vq_push(e, 0);
		vdev_needs_reset(&b->vdev, "request without a writable status byte");
		return;
	}
	if (e->out_len < sizeof(h))
		return blk_bad(b, e, VIRTIO_BLK_S_IOERR, "header shorter than 16 bytes", 0);
	iov_to_buf(e->iov, e->n_out, 0, &h, sizeof(h));
	uint32_t type = le32toh(h.type);
	uint64_t sector = le64toh(h.sector);

	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		return blk_start_rw(b, e, type == VIRTIO_BLK_T_OUT, sector);
	case VIRTIO_BLK_T_FLUSH:
		return blk_start_flush(b, e);
	case VIRTIO_BLK_T_GET_ID:
		return blk_get_id(b, e);
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return blk_start_dwz(b, e, type == VIRTIO_BLK_T_DISCARD);
	default:
		return blk_bad(b, e, VIRTIO_BLK_S_UNSUPP, "unknown request type", sector);
	}
}

/* ---- queues ------------------------------------------------------------------------------ */

/*
 * Pop up to VQ_BUDGET chains of queue q and submit them as one batch; true when more wait.
 * Kicks are off while we pop and back on when the ring is empty (looked at once more after
 * re-enabling, so a chain published meanwhile is not stranded). Keeping them off for as long as
 * requests are in flight saves the guest its kicks but holds new chains until the next
 * completion: measured slower (a third of the IOPS at QD32), so completions only add a look at
 * the ring (blk_reap) on top of the kicks.
 */
static bool blk_process(struct blk_dev *b, unsigned q)
{
	struct virtqueue *vq = &b->vdev.vqs[q];
	unsigned n = 0;
	int err = 0;

	if (!vdev_active(&b->vdev) || !vq->enabled)
		return false;
	vq_disable_notify(vq);
	for (;;) {
		struct vq_elem *e;

		/* Peek first: vq_pop() on an empty ring would re-arm kicks (EVENT_IDX). */
		while (n < VQ_BUDGET && vdev_active(&b->vdev) && vq_has_work(vq) &&
		       (e = vq_pop(vq, &err))) {
			/* Alone: no chain behind it, nothing waiting for the ring (blk_try_inline). */
			b->lone = b->ring_ok && !vq_has_work(vq) && !io_uring_sq_ready(&b->ring);
			blk_start(b, e);
			b->lone = false;
			n++;
		}
		if (err)
			vdev_vq_error(&b->vdev, vq);
		if (n == VQ_BUDGET || err || !vdev_active(&b->vdev) || !vq_enable_notify(vq))
			break;
	}
	blk_submit(b);
	blk_used(b);
	return n == VQ_BUDGET && vq_more(vq);
}

/* Fairness: the rest of queue q waits for the next loop iteration. */
static void blk_more(struct blk_dev *b, unsigned q)
{
	b->more_queues |= UINT64_C(1) << q;
	ev_idle_start(b->vdev.host->loop, &b->more);
}

static void blk_more_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct blk_dev *b = container_of(w, struct blk_dev, more);
	uint64_t todo = b->more_queues;

	(void)revents;
	b->more_queues = 0;
	for (unsigned q = 0; todo; q++, todo >>= 1)
		if ((todo & 1) && q < b->vdev.num_queues && blk_process(b, q))
			b->more_queues |= UINT64_C(1) << q;
	if (!b->more_queues)
		ev_idle_stop(loop, w);
}

static void blk_queue_notify(struct vdev *d, unsigned q)
{
	struct blk_dev *b = blk_of(d);

	if (blk_process(b, q))
		blk_more(b, q);
}

/* ---- ops --------------------------------------------------------------------------------- */

static void blk_cfg_put(uint8_t *c, unsigned off, uint64_t v, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		c[off + i] = (uint8_t)(v >> (8 * i));
}

static unsigned blk_log2(uint32_t v)
{
	unsigned n = 0;

	while (v > 1) {
		v >>= 1;
		n++;
	}
	return n;
}

static void blk_config_build(const struct blk_dev *b, uint8_t *c)
{
	memset(c, 0, VIRTIO_BLK_CFG_SIZE);
	blk_cfg_put(c, VIRTIO_BLK_CFG_CAPACITY, b->capacity, 8);
	blk_cfg_put(c, VIRTIO_BLK_CFG_SIZE_MAX, BLK_SIZE_MAX, 4);
	blk_cfg_put(c, VIRTIO_BLK_CFG_SEG_MAX, b->vdev.queue_max - 2u, 4);
	blk_cfg_put(c, VIRTIO_BLK_CFG_BLK_SIZE, b->lbs, 4);
	blk_cfg_put(c, VIRTIO_BLK_CFG_PHYS_EXP, blk_log2(b->pbs / b->lbs), 1);
	blk_cfg_put(c, VIRTIO_BLK_CFG_MIN_IO, b->pbs / b->lbs, 2);
	blk_cfg_put(c, VIRTIO_BLK_CFG_OPT_IO, b->opt_io / b->lbs, 4);
	blk_cfg_put(c, VIRTIO_BLK_CFG_WRITEBACK, b->writeback, 1);
	blk_cfg_put(c, VIRTIO_BLK_CFG_NUM_QUEUES, b->vdev.num_queues, 2);
	blk_cfg_put(c, VIRTIO_BLK_CFG_MAX_DISCARD, BLK_MAX_DWZ_SECTORS, 4);
	blk_cfg_put(c, VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 1, 4);
	blk_cfg_put(c, VIRTIO_BLK_CFG_DISCARD_ALIGN, b->pbs / VIRTIO_BLK_SECTOR, 4);
	blk_cfg_put(c, VIRTIO_BLK_CFG_MAX_WZ, BLK_MAX_DWZ_SECTORS, 4);
	blk_cfg_put(c, VIRTIO_BLK_CFG_MAX_WZ_SEG, 1, 4);
	blk_cfg_put(c, VIRTIO_BLK_CFG_WZ_MAY_UNMAP, 1, 1);
}

static void blk_config_read(struct vdev *d, uint32_t off, void *buf, uint32_t len)
{
	uint8_t c[VIRTIO_BLK_CFG_SIZE];

	blk_config_build(blk_of(d), c);
	memcpy(buf, c + off, len);
}

static void blk_config_write(struct vdev *d, uint32_t off, const void *buf, uint32_t len)
{
	struct blk_dev *b = blk_of(d);

	/* Only `writeback` is writable, and only once CONFIG_WCE is negotiated. */
	if (off != VIRTIO_BLK_CFG_WRITEBACK || len != 1 ||
	    !vdev_has(d, VIRTIO_BLK_F_CONFIG_WCE)) {
		vdev_log(d, VDEV_LOG_ACCESS, LOG_WARNING,
			 "%s: ignored config write at %u (%u bytes)", d->name, off, len);
		return;
	}
	blk_set_writeback(b, *(const uint8_t *)buf ? 1 : 0);
	vdev_log(d, VDEV_LOG_INFO, LOG_INFO, "%s: guest switched to %s", d->name,
		 b->writeback ? "writeback" : "writethrough");
}

static int blk_activate(struct vdev *d)
{
	(void)d;
	return 0;
}

/*
 * Wait for every request the kernel holds (after asking it to cancel what it can, when
 * `cancel`), at most wait_ms, so no buffer it writes is handed back to the guest or freed early.
 * False when some are still held: they complete later (stale, dropped) unless the device is
 * being destroyed.
 */
static bool blk_drain(struct blk_dev *b, int wait_ms, bool cancel)
{
	struct timespec start, now;
	struct io_uring_sqe *sqe;

	if (!b->ring_ok || !b->st.inflight)
		return true;
	sqe = cancel ? io_uring_get_sqe(&b->ring) : NULL;
	if (sqe) {
		io_uring_prep_cancel(sqe, NULL, IORING_ASYNC_CANCEL_ANY);
		io_uring_sqe_set_data(sqe, NULL);
	}
	blk_submit(b);
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (b->st.inflight) {
		struct __kernel_timespec ts = { .tv_sec = 1 };
		struct io_uring_cqe *cqe;

		if (io_uring_wait_cqe_timeout(&b->ring, &cqe, &ts) == 0)
			blk_reap(b);
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;

		if (b->st.inflight && ms >= wait_ms) {
			vdev_log(&b->vdev, VDEV_LOG_RESET, LOG_WARNING,
				 "%s: %u requests still in flight after %d ms", b->vdev.name,
				 b->st.inflight, wait_ms);
			return false;
		}
	}
	return true;
}

/* What every reset does first: older requests become stale, nothing new starts. */
static void blk_reset_begin(struct blk_dev *b)
{
	b->epoch++;
	b->more_queues = 0;
	b->touched = 0;
	ev_idle_stop(b->vdev.host->loop, &b->more);
	blk_bounce_flush_waiters(b, false);
}

static void blk_reset_end(struct blk_dev *b)
{
	ev_timer_stop(b->vdev.host->loop, &b->reset_w);
	b->reset_waits = false;
	b->resetting = false;
	blk_set_writeback(b, 1);
}

/*
 * NBD: nothing the engine holds points into guest memory (bounce buffers only), so a reset is
 * done at once. Commands not sent are cancelled; those on the wire give the guest's buffers
 * back now and are dropped when they complete.
 */
static void blk_nbd_reset(struct blk_dev *b)
{
	if (b->nbd)
		blk_nbd_cancel_waiting(b->nbd);
	blk_remote_foreach(b, blk_nbd_forget);
	blk_reset_end(b);
}

/* The daemon resets (teardown): done when this returns, waiting a bounded time. */
static void blk_reset(struct vdev *d)
{
	struct blk_dev *b = blk_of(d);

	blk_reset_begin(b);
	if (blk_remote(b)) {
		blk_nbd_reset(b);
		return;
	}
	b->resetting = true;
	blk_drain(b, BLK_RESET_WAIT_MS, true);
	blk_reset_end(b);
}

/*
 * The driver resets: in-flight I/O is cancelled where the kernel can, and the reset completes
 * once the kernel gave every request back (the guest may reuse its buffers after it), from
 * blk_reap() or, at the latest, after BLK_RESET_WAIT_MS (blk_reset_timeout_cb). The loop goes
 * on meanwhile; only the driver's Status write waits.
 */
static int blk_reset_start(struct vdev *d)
{
	struct blk_dev *b = blk_of(d);
	struct io_uring_sqe *sqe;

	blk_reset_begin(b);
	if (blk_remote(b)) {
		blk_nbd_reset(b);
		return 0;
	}
	if (!b->ring_ok || !b->st.inflight) {
		blk_reset_end(b);
		return 0;
	}
	b->resetting = true;
	b->reset_waits = true;
	sqe = io_uring_get_sqe(&b->ring);
	if (sqe) {
		io_uring_prep_cancel(sqe, NULL, IORING_ASYNC_CANCEL_ANY);
		io_uring_sqe_set_data(sqe, NULL);
	}
	blk_submit(b);
	ev_timer_set(&b->reset_w, BLK_RESET_WAIT_MS / 1000.0, 0.);
	ev_timer_start(d->host->loop, &b->reset_w);
	return VDEV_RESET_LATER;
}

/* The last request the reset waited for came back. */
static void blk_reset_check(struct blk_dev *b)
{
	if (!b->reset_waits || b->st.inflight)
		return;
	blk_reset_end(b);
	vdev_reset_done(&b->vdev);
}

static void blk_reset_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct blk_dev *b = container_of(w, struct blk_dev, reset_w);

	(void)loop;
	(void)revents;
	vdev_log(&b->vdev, VDEV_LOG_RESET, LOG_WARNING,
		 "%s: %u requests still in flight %d ms after a reset; the reset completes without "
		 "them (their completions are dropped)", b->vdev.name, b->st.inflight,
		 BLK_RESET_WAIT_MS);
	blk_reset_end(b);
	vdev_reset_done(&b->vdev);
}

/*
 * NBD or RBD, the daemon stops: what is on the wire (in librbd) completes (bounded wait); what
 * still waits for a reconnect (or for librbd) fails with IOERR, or, when a next instance takes
 * over, is left to it (its chains are not completed, so it finds them in the ring).
 */
static void blk_nbd_quiesce(struct blk_dev *b)
{
	bool drained = b->rbd ? blk_rbd_drain(b->rbd, BLK_DESTROY_WAIT_MS) :
				blk_nbd_drain(b->nbd, BLK_DESTROY_WAIT_MS);

	if (!drained)
		log_warn("%s: %u %s requests unanswered after %d ms", b->vdev.name,
			 b->rbd ? blk_rbd_held(b->rbd) : blk_nbd_held(b->nbd),
			 b->rbd ? "RBD" : "NBD", BLK_DESTROY_WAIT_MS);
	if (b->vdev.leaving)
		blk_remote_foreach(b, blk_nbd_forget);
	else if (b->rbd)
		blk_rbd_fail_all(b->rbd, -EIO);
	else
		blk_nbd_fail_all(b->nbd, -EIO);
}

/*
 * The daemon stops, the guest stays: every request the kernel holds completes normally (no
 * cancel: a write the guest sees acknowledged must really be written) and goes back to the
 * guest with its status, so a restarted daemon's guest has nothing hanging in its ring.
 */
static void blk_quiesce(struct vdev *d)
{
	struct blk_dev *b = blk_of(d);

	ev_idle_stop(d->host->loop, &b->more);
	b->resetting = true;     /* completions must not pop new chains */
	/* Not started: failed, or left for the instance that takes the device over. */
	if (!d->leaving)
		blk_bounce_flush_waiters(b, true);
	if (blk_remote(b))
		blk_nbd_quiesce(b);
	else
		blk_drain(b, BLK_DESTROY_WAIT_MS, false);
	blk_used(b);
	b->resetting = false;
}

static void blk_free(struct blk_dev *b)
{
	blk_bounce_flush_waiters(b, false);
	if (blk_remote(b)) {
		ev_idle_stop(b->vdev.host->loop, &b->more);
		ev_timer_stop(b->vdev.host->loop, &b->reset_w);
		if (b->rbd)
			blk_rbd_close(b->rbd, blk_nbd_release, NULL);
		else
			blk_nbd_close(b->nbd, blk_nbd_release, NULL);
	}
	if (b->ring_ok) {
		b->resetting = true;
		bool drained = blk_drain(b, BLK_DESTROY_WAIT_MS, true);

		ev_io_stop(b->vdev.host->loop, &b->efd_w);
		ev_idle_stop(b->vdev.host->loop, &b->more);
		ev_timer_stop(b->vdev.host->loop, &b->reset_w);
		if (!drained) {
			/*
			 * The kernel may still write into our bounce buffers: freeing them could
			 * hand that memory to someone else. Leave everything to the process exit.
			 */
			log_err("%s: %u requests stuck in the kernel; their memory is not freed",
				b->vdev.name, b->st.inflight);
			return;
		}
		io_uring_queue_exit(&b->ring);
		free(b->pool);
	}
	blk_spare_clear(b);
	if (b->efd >= 0)
		close(b->efd);
	if (b->fd >= 0)
		close(b->fd);
	vdev_fini(&b->vdev);
	free(b);
}

static void blk_destroy(struct vdev *d)
{
	blk_free(blk_of(d));
}

static uint64_t blk_features(const struct blk_dev *b, const struct config_block *c)
{
	uint64_t f = VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
		     VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_TOPOLOGY) |
		     VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_CONFIG_WCE) |
		     VIRTIO_BIT(VIRTIO_BLK_F_MQ);

	if (b->readonly)
		return f | VIRTIO_BIT(VIRTIO_BLK_F_RO);
	/* An NBD server that cannot trim / zero: not offered (fallocate has fallbacks). */
	if (c->discard && (!blk_remote(b) || b->remote_trim))
		f |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD);
	if (c->write_zeroes && (!blk_remote(b) || b->remote_zero))
		f |= VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

static int blk_check_config(const struct config_device *cfg, unsigned *queues, unsigned *qsize)
{
	const struct config_block *c = &cfg->u.block;

	*queues = c->queues ? c->queues : 1;
	*qsize = c->queue_size ? c->queue_size : BLK_DEF_QUEUE_SIZE;
	if (*queues > BLK_MAX_QUEUES || *qsize < 4 || *qsize > VQ_MAX_SIZE ||
	    (*qsize & (*qsize - 1))) {
		log_err("block \"%s\": queues = %u / queue_size = %u out of range", cfg->name,
			*queues, *qsize);
		return -EINVAL;
	}
	if (!c->path[0] && !c->nbd[0] && !c->rbd[0]) {
		log_err("block \"%s\": no path", cfg->name);
		return -EINVAL;
	}
	return 0;
}

/* The driver's cache mode is state it can observe: a next instance keeps it (vdev_persist()). */
static void blk_init_writeback(struct blk_dev *b)
{
	bool adopted;

	b->wb_rec = vdev_persist(&b->vdev, "writeback", 1, &adopted);
	if (b->wb_rec && adopted && b->vdev.adopted && *b->wb_rec)
		b->writeback = (uint8_t)(*b->wb_rec - 1);
	else
		blk_set_writeback(b, 1);
}

/* The [block] tls_* keys, as the NBD engine takes them. */
static struct blk_nbd_tls blk_nbd_tls_of(const struct config_block *c)
{
	return (struct blk_nbd_tls){ c->tls_psk_file, c->tls_certificates, c->tls_username };
}

/* nbd = URI: connect (retrying for io_timeout), then describe the disk as the server does. */
static int blk_nbd_setup(struct blk_dev *b, const struct config_block *c)
{
	const struct blk_nbd_info *ni;
	const struct blk_nbd_tls tls = blk_nbd_tls_of(c);
	int rc = blk_nbd_open(b->vdev.host->loop, b->vdev.name, c->nbd, &tls, c->io_timeout,
			      blk_nbd_done, blk_nbd_batch, b, &b->nbd);

	if (rc < 0)
		return rc;
	ni = blk_nbd_info(b->nbd);
	b->capacity = ni->size / VIRTIO_BLK_SECTOR;
	if (ni->readonly && !b->readonly)
		log_info("%s: the NBD export is read-only", b->vdev.name);
	b->remote_ro = ni->readonly;
	b->remote_trim = ni->can_trim;
	b->remote_zero = ni->can_zero;
	b->readonly |= ni->readonly;
	b->lbs = 512;
	b->pbs = blk_clamp_align(ni->pref_block, 4096);
	if (b->pbs > 4096)
		b->pbs = 4096;
	b->dio_mem = b->dio_off = 512;
	return 0;
}

static void blk_rbd_changed(void *opaque);

/* rbd = POOL/IMAGE: connect (retrying for io_timeout), open, describe the disk as librbd does. */
static int blk_rbd_setup(struct blk_dev *b, const struct config_block *c)
{
	const struct blk_rbd_info *ri;
	int rc = blk_rbd_open(b->vdev.host->loop, b->vdev.name, c, blk_nbd_done, blk_nbd_batch,
			      blk_rbd_changed, b, &b->rbd);

	if (rc < 0)
		return rc;
	ri = blk_rbd_info(b->rbd);
	b->capacity = ri->size / VIRTIO_BLK_SECTOR;
	if (ri->readonly && !b->readonly)
		log_info("%s: an RBD snapshot is read-only", b->vdev.name);
	b->remote_ro = ri->readonly;
	b->remote_trim = b->remote_zero = true;
	b->readonly |= ri->readonly;
	b->lbs = 512;
	b->pbs = 4096;
	b->opt_io = ri->obj_size;
	b->dio_mem = b->dio_off = 512;
	return 0;
}

/* The backend string a disk is known by: its path, NBD URI or RBD image. */
static const char *blk_backend(const struct config_block *c)
{
	return c->rbd[0] ? c->rbd : c->nbd[0] ? c->nbd : c->path;
}

static int blk_create(struct vdev_host *host, const struct config_device *cfg, struct vdev **out)
{
	const struct config_block *c = &cfg->u.block;
	unsigned queues, qsize;
	char name[sizeof(((struct vdev *)0)->name)];
	int rc = blk_check_config(cfg, &queues, &qsize);

	if (rc < 0)
		return rc;
	if (!host->loop) {
		log_err("block \"%s\": needs an event loop", cfg->name);
		return -EINVAL;
	}
	struct blk_dev *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->fd = b->efd = -1;
	b->bwait_tail = &b->bwait;
	snprintf(name, sizeof(name), "block %s", cfg->name[0] ? cfg->name : "-");
	rc = vdev_init(&b->vdev, &vdev_block_ops, host, name, (uint16_t)queues, (uint16_t)qsize);
	if (rc < 0) {
		free(b);
		return rc;
	}
	snprintf(b->path, sizeof(b->path), "%s", blk_backend(c));
	b->readonly = c->readonly;
	b->direct = !c->nbd[0] && !c->rbd[0] && c->cache == BLK_CACHE_NONE;
	blk_init_writeback(b);
	if (c->rbd[0])
		rc = blk_rbd_setup(b, c);
	else if (c->nbd[0])
		rc = blk_nbd_setup(b, c);
	else if ((rc = blk_open(b)) == 0)
		rc = blk_ring_init(b, queues, qsize);
	if (rc < 0) {
		blk_free(b);
		return rc;
	}
	blk_set_serial(b, c->serial);
	ev_idle_init(&b->more, blk_more_cb);
	ev_init(&b->reset_w, blk_reset_timeout_cb);
	b->vdev.host_features = blk_features(b, c);
	b->vdev.config_size = VIRTIO_BLK_CFG_SIZE;
	log_info("%s: %s, %" PRIu64 " sectors, %s%s, block %u/%u, %u queue(s) of %u", name,
		 b->path, b->capacity, b->direct ? "cache=none" : "cache=writeback",
		 b->readonly ? ", read-only" : "", b->lbs, b->pbs, queues, qsize);
	*out = &b->vdev;
	return 0;
}

/* The backend's size now, in sectors (the image may have been resized), or -errno. */
static int64_t blk_probe_capacity(const struct blk_dev *b)
{
	uint64_t bytes;
	struct stat st;

	if (b->rbd)   /* as librbd saw it at the last header change */
		return (int64_t)(blk_rbd_info(b->rbd)->size / VIRTIO_BLK_SECTOR);
	if (b->nbd)   /* as the server said at the last (re)connect */
		return (int64_t)(blk_nbd_info(b->nbd)->size / VIRTIO_BLK_SECTOR);
	if (b->is_bdev)
		return ioctl(b->fd, BLKGETSIZE64, &bytes) < 0 ? -errno :
		       (int64_t)(bytes / VIRTIO_BLK_SECTOR);
	return fstat(b->fd, &st) < 0 ? -errno : (int64_t)(st.st_size / VIRTIO_BLK_SECTOR);
}

/*
 * Read the backend's size again; on a change, take it and tell the guest (config interrupt).
 * The new capacity in sectors, or -errno (logged).
 */
static int64_t blk_update_capacity(struct blk_dev *b)
{
	int64_t cap = blk_probe_capacity(b);

	if (cap < 0) {
		log_err("%s: %s: cannot read the size: %s", b->vdev.name, b->path,
			strerror((int)-cap));
		return cap;
	}
	if ((uint64_t)cap != b->capacity) {
		log_notice("%s: capacity %" PRIu64 " -> %" PRId64 " sectors", b->vdev.name,
			   b->capacity, cap);
		b->capacity = (uint64_t)cap;
		vdev_config_changed(&b->vdev);
	}
	return cap;
}

/* What a reload cannot change: the backend, its mode, the queues and the offered features. */
static const char *blk_fixed_key_changed(const struct blk_dev *b, const struct config_device *cfg)
{
	const struct config_block *c = &cfg->u.block;

	if (strcmp(blk_backend(c), b->path) != 0)
		return c->rbd[0] ? "rbd" : c->nbd[0] ? "nbd" : "path";
	if ((c->readonly || b->remote_ro) != b->readonly)
		return "readonly";
	if ((c->cache == BLK_CACHE_NONE) != b->direct)
		return "cache";
	if ((c->queues ? c->queues : 1) != b->vdev.num_queues)
		return "queues";
	if ((c->queue_size ? c->queue_size : BLK_DEF_QUEUE_SIZE) != b->vdev.queue_max)
		return "queue_size";
	if (blk_features(b, c) != b->vdev.host_features)
		return "discard / write_zeroes";
	return NULL;
}

/*
 * SIGHUP: the image may have been grown (or shrunk): the capacity is read again and the guest
 * told with a config interrupt. The serial may change too, and an NBD disk's io_timeout and TLS
 * credentials (for its next connection); anything else needs a restart.
 */
static int blk_reconfigure(struct vdev *d, const struct config_device *cfg)
{
	struct blk_dev *b = blk_of(d);
	const char *key = blk_fixed_key_changed(b, cfg);
	int64_t cap;

	if (key) {
		log_warn("%s: %s cannot change at run time", d->name, key);
		return -EINVAL;
	}
	cap = blk_update_capacity(b);
	if (cap < 0)
		return (int)cap;
	blk_set_serial(b, cfg->u.block.serial);
	if (b->nbd) {
		const struct blk_nbd_tls tls = blk_nbd_tls_of(&cfg->u.block);

		blk_nbd_set_timeout(b->nbd, cfg->u.block.io_timeout);
		blk_nbd_set_tls(b->nbd, &tls);
	}
	if (b->rbd)
		blk_rbd_set_timeout(b->rbd, cfg->u.block.io_timeout);
	return 0;
}

/* librbd saw the image resized (its header watch): the guest hears of it now. */
static void blk_rbd_changed(void *opaque)
{
	blk_update_capacity(opaque);
}

int blk_resize(struct vdev *d, uint64_t *old_sectors, uint64_t *new_sectors)
{
	struct blk_dev *b;
	int64_t cap;

	if (!d || d->ops != &vdev_block_ops)
		return -EINVAL;
	b = blk_of(d);
	*old_sectors = b->capacity;
	cap = blk_update_capacity(b);
	if (cap < 0)
		return (int)cap;
	*new_sectors = (uint64_t)cap;
	return 0;
}

const struct blk_stats *blk_get_stats(const struct vdev *d)
{
	if (!d || d->ops != &vdev_block_ops)
		return NULL;
	return &container_of(d, struct blk_dev, vdev)->st;
}

const struct vdev_ops vdev_block_ops = {
	.type = "block",
	.device_id = VIRTIO_ID_BLOCK,
	.create = blk_create,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.activate = blk_activate,
	.reset = blk_reset,
	.reset_start = blk_reset_start,
	.quiesce = blk_quiesce,
	.queue_notify = blk_queue_notify,
	.reconfigure = blk_reconfigure,
	.destroy = blk_destroy,
};
