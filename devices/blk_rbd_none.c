/*
 * The RBD engine's stand-in for builds without librbd (make RBD=0, or no librbd-dev): a disk
 * with rbd = POOL/IMAGE fails to start, saying why. blk.c calls nothing else while it has no
 * engine.
 */
#ifndef XVD_HAVE_RBD
#include <errno.h>
#include <stddef.h>

#include "devices/blk_rbd.h"
#include "lib/log.h"

int blk_rbd_open(struct ev_loop *loop, const char *name, const struct config_block *c,
		 blk_nbd_done_fn *done, blk_nbd_batch_fn *batch, blk_rbd_changed_fn *changed,
		 void *opaque, struct blk_rbd **out)
{
	(void)loop, (void)done, (void)batch, (void)changed, (void)opaque;
	*out = NULL;
	log_err("%s: %s: this xen-virtiod was built without Ceph RBD support (librbd)", name,
		c->rbd);
	return -ENOTSUP;
}

const struct blk_rbd_info *blk_rbd_info(const struct blk_rbd *r)
{
	(void)r;
	return NULL;
}

void blk_rbd_set_timeout(struct blk_rbd *r, unsigned io_timeout)
{
	(void)r, (void)io_timeout;
}

void blk_rbd_submit(struct blk_rbd *r, struct blk_nbd_cmd *c)
{
	(void)r, (void)c;
}

unsigned blk_rbd_held(const struct blk_rbd *r)
{
	(void)r;
	return 0;
}

void blk_rbd_foreach(struct blk_rbd *r, void (*fn)(struct blk_nbd_cmd *c, void *opaque),
		     void *opaque)
{
	(void)r, (void)fn, (void)opaque;
}

bool blk_rbd_drain(struct blk_rbd *r, int wait_ms)
{
	(void)r, (void)wait_ms;
	return true;
}

void blk_rbd_fail_all(struct blk_rbd *r, int err)
{
	(void)r, (void)err;
}

void blk_rbd_close(struct blk_rbd *r, void (*release)(struct blk_nbd_cmd *c, void *opaque),
		   void *opaque)
{
	(void)r, (void)release, (void)opaque;
}

#endif /* !XVD_HAVE_RBD */
