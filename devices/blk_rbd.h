/*
 * The Ceph RBD engine of virtio-blk (devices/blk.c): one librbd image per disk. Requests are
 * librbd's asynchronous calls; librbd completes them on its own threads, which only write the
 * image's eventfd (rbd_set_image_notification): the loop polls the completions
 * (rbd_poll_io_events) and hands them back through done, then one batch call. Nothing of ours
 * runs on librbd's threads except the resize watch, which writes an eventfd as well.
 *
 * Commands are blk.c's remote-engine commands (struct blk_nbd_cmd, devices/blk_nbd.h), with the
 * same contract as the NBD engine's, plus `late`: past io_timeout a command is answered with
 * -ETIMEDOUT while librbd still holds its buffer, and handed back a second time when it let go.
 */
#ifndef XVD_BLK_RBD_H
#define XVD_BLK_RBD_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "devices/blk_nbd.h"

struct blk_rbd;

/* The image, as librbd describes it. */
struct blk_rbd_info {
	uint64_t size;              /* bytes (updated when the image is resized) */
	uint32_t obj_size;          /* object size: the preferred I/O size */
	bool readonly;              /* a snapshot (rbd = POOL/IMAGE@SNAP) */
};

/* The image's size changed (a resize seen through its header watch): read blk_rbd_info. */
typedef void blk_rbd_changed_fn(void *opaque);

/*
 * Connect to the cluster (c->ceph_conf, ceph_id, keyring) and open c->rbd, retrying with a
 * logged backoff for at most c->io_timeout seconds (blocking: this runs at device creation).
 * 0, -EINVAL for what no retry can fix (no such pool or image), or another -errno.
 */
int blk_rbd_open(struct ev_loop *loop, const char *name, const struct config_block *c,
		 blk_nbd_done_fn *done, blk_nbd_batch_fn *batch, blk_rbd_changed_fn *changed,
		 void *opaque, struct blk_rbd **out);
const struct blk_rbd_info *blk_rbd_info(const struct blk_rbd *r);
void blk_rbd_set_timeout(struct blk_rbd *r, unsigned io_timeout);

/* Hand c to librbd; it completes through done either way (an error at submission too). */
void blk_rbd_submit(struct blk_rbd *r, struct blk_nbd_cmd *c);

/* Commands librbd holds (answered late ones included). */
unsigned blk_rbd_held(const struct blk_rbd *r);

/* Every held command that was not answered yet (fn may not submit or complete commands). */
void blk_rbd_foreach(struct blk_rbd *r, void (*fn)(struct blk_nbd_cmd *c, void *opaque),
		     void *opaque);

/* Wait (blocking) up to wait_ms for librbd's answers; true when none is left unanswered. */
bool blk_rbd_drain(struct blk_rbd *r, int wait_ms);

/* Answer every unanswered command with err now (late: librbd keeps their buffers until close). */
void blk_rbd_fail_all(struct blk_rbd *r, int err);

/*
 * Wait for librbd to let go of every command (bounded by the cluster's op timeouts, which are
 * io_timeout), hand each to release, close the image and the cluster connection.
 */
void blk_rbd_close(struct blk_rbd *r, void (*release)(struct blk_nbd_cmd *c, void *opaque),
		   void *opaque);

#endif
