/*
 * The NBD engine's stand-in for builds without libnbd (make NBD=0, or no libnbd-dev): a disk
 * with nbd = URI fails to start, saying why. blk.c calls nothing else while it has no engine.
 */
#ifndef XVD_HAVE_NBD
#include <errno.h>
#include <stddef.h>

#include "devices/blk_nbd.h"
#include "lib/log.h"

int blk_nbd_open(struct ev_loop *loop, const char *name, const char *uri,
		 const struct blk_nbd_tls *tls, unsigned io_timeout, blk_nbd_done_fn *done,
		 blk_nbd_batch_fn *batch, void *opaque, struct blk_nbd **out)
{
	(void)loop, (void)tls, (void)io_timeout, (void)done, (void)batch, (void)opaque;
	*out = NULL;
	log_err("%s: %s: this xen-virtiod was built without NBD support (libnbd)", name, uri);
	return -ENOTSUP;
}

const struct blk_nbd_info *blk_nbd_info(const struct blk_nbd *n)
{
	(void)n;
	return NULL;
}

void blk_nbd_set_timeout(struct blk_nbd *n, unsigned io_timeout)
{
	(void)n, (void)io_timeout;
}

void blk_nbd_set_tls(struct blk_nbd *n, const struct blk_nbd_tls *tls)
{
	(void)n, (void)tls;
}

void blk_nbd_submit(struct blk_nbd *n, struct blk_nbd_cmd *c)
{
	(void)n, (void)c;
}

unsigned blk_nbd_held(const struct blk_nbd *n)
{
	(void)n;
	return 0;
}

void blk_nbd_foreach(struct blk_nbd *n, void (*fn)(struct blk_nbd_cmd *c, void *opaque),
		     void *opaque)
{
	(void)n, (void)fn, (void)opaque;
}

void blk_nbd_cancel_waiting(struct blk_nbd *n)
{
	(void)n;
}

bool blk_nbd_drain(struct blk_nbd *n, int wait_ms)
{
	(void)n, (void)wait_ms;
	return true;
}

void blk_nbd_fail_all(struct blk_nbd *n, int err)
{
	(void)n, (void)err;
}

void blk_nbd_close(struct blk_nbd *n, void (*release)(struct blk_nbd_cmd *c, void *opaque),
		   void *opaque)
{
	(void)n, (void)release, (void)opaque;
}

#endif /* !XVD_HAVE_NBD */
