/*
 * virtio-rng (device id 4): one queue of device-writable buffers, filled from getrandom().
 *
 * Requests are served synchronously in queue_notify (getrandom never blocks with
 * GRND_NONBLOCK), so the device works without an event loop. With `rate` set, a token bucket
 * (one second of burst) caps the bytes per second; a request that finds the bucket empty waits
 * for an ev_timer, which needs the event loop (without one it is served on the next kick).
 */
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "config/config.h"
#include "devices/device.h"

extern const struct vdev_ops vdev_rng_ops;

#define RNG_DEVICE_ID  4
#define RNG_QUEUE_MAX  256
#define RNG_CHAIN_MAX  (64u * 1024)   /* bytes per request: bounds the time one chain takes */
#define RNG_WAIT_S     0.05           /* how long an empty bucket waits before refilling */
#define RNG_MIN_GRANT  64.0           /* rate limited: smallest grant worth a request */

struct rng {
	struct vdev vdev;
	uint64_t rate;            /* bytes per second; 0 = unlimited */
	double tokens;            /* bytes we may still hand out */
	uint64_t refill_ns;       /* when tokens were last topped up */
	ev_timer wait;            /* the bucket was empty: try again later */
	ev_idle more;             /* VQ_BUDGET chains done, more waiting: continue next turn */
	uint64_t bytes;           /* served since creation, for the state dump */
};

static struct rng *rng_of(struct vdev *d)
{
	return container_of(d, struct rng, vdev);
}

static uint64_t rng_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Bytes we may serve now: unlimited without a rate, else the refilled bucket. */
static uint64_t rng_allowance(struct rng *r)
{
	if (!r->rate)
		return UINT64_MAX;
	uint64_t now = rng_now_ns();
	double add = (double)(now - r->refill_ns) * (double)r->rate / 1e9;

	r->refill_ns = now;
	r->tokens += add;
	if (r->tokens > (double)r->rate)
		r->tokens = (double)r->rate;
	/* Wait for a useful amount rather than dribble out a few bytes per kick. */
	if (r->tokens < RNG_MIN_GRANT && r->tokens < (double)r->rate)
		return 0;
	return (uint64_t)r->tokens;
}

/* Fill up to limit bytes of the writable part from the kernel's pool; returns bytes written. */
static uint32_t rng_fill(struct vq_elem *e, uint64_t limit)
{
	uint64_t done = 0;

	for (unsigned i = e->n_out; i < (unsigned)e->n_out + e->n_in && done < limit; i++) {
		size_t want = e->iov[i].iov_len;

		if (want > limit - done)
			want = (size_t)(limit - done);
		ssize_t got = getrandom(e->iov[i].iov_base, want, GRND_NONBLOCK);

		if (got <= 0)
			break;   /* pool not ready (early boot): hand back what we have */
		done += (uint64_t)got;
		if ((size_t)got < want)
			break;
	}
	return (uint32_t)done;
}

static void rng_defer(struct rng *r, bool bucket_empty)
{
	struct ev_loop *loop = r->vdev.host->loop;

	if (!loop)
		return;
	if (bucket_empty && !ev_is_active(&r->wait)) {
		ev_timer_set(&r->wait, RNG_WAIT_S, 0.);
		ev_timer_start(loop, &r->wait);
	} else if (!bucket_empty && !ev_is_active(&r->more)) {
		ev_idle_start(loop, &r->more);
	}
}

/* Serve up to VQ_BUDGET requests; returns true when some were returned to the guest. */
static bool rng_serve(struct rng *r, struct virtqueue *vq)
{
	bool pushed = false;

	for (unsigned n = 0; n < VQ_BUDGET; n++) {
		uint64_t allow = rng_allowance(r);
		struct vq_elem *e;
		int err;

		if (allow == 0) {
			if (vq_more(vq))
				rng_defer(r, true);
			return pushed;
		}
		e = vq_pop(vq, &err);
		if (!e) {
			if (err)
				vdev_vq_error(&r->vdev, vq);
			return pushed;
		}
		uint32_t len = rng_fill(e, allow < RNG_CHAIN_MAX ? allow : RNG_CHAIN_MAX);

		r->tokens -= r->rate ? len : 0;
		r->bytes += len;
		vq_push(e, len);
		pushed = true;
	}
	if (vq_more(vq))
		rng_defer(r, false);
	return pushed;
}

static void rng_process(struct rng *r)
{
	struct virtqueue *vq = &r->vdev.vqs[0];

	if (!vdev_active(&r->vdev))
		return;
	if (rng_serve(r, vq))
		vdev_used(&r->vdev, vq);
}

static void rng_wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	rng_process(container_of(w, struct rng, wait));
}

static void rng_more_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w);
	rng_process(container_of(w, struct rng, more));
}

static void rng_queue_notify(struct vdev *d, unsigned q)
{
	(void)q;   /* the transport passes only existing queues: there is one */
	rng_process(rng_of(d));
}

static void rng_stop_watchers(struct rng *r)
{
	struct ev_loop *loop = r->vdev.host->loop;

	if (!loop)
		return;
	ev_timer_stop(loop, &r->wait);
	ev_idle_stop(loop, &r->more);
}

static void rng_reset(struct vdev *d)
{
	/* Nothing is ever held across calls: only the deferred work has to go. */
	rng_stop_watchers(rng_of(d));
}

static int rng_create(struct vdev_host *host, const struct config_device *cfg, struct vdev **out)
{
	struct rng *r = calloc(1, sizeof(*r));
	char name[80];
	int rc;

	if (!r)
		return -ENOMEM;
	snprintf(name, sizeof(name), "rng%s%s", cfg && cfg->name[0] ? " " : "",
		 cfg ? cfg->name : "");
	rc = vdev_init(&r->vdev, &vdev_rng_ops, host, name, 1, RNG_QUEUE_MAX);
	if (rc < 0) {
		log_err("%s: cannot initialise: %s", name, rc == -ENOMEM ? "out of memory" :
			"bad parameters");
		free(r);
		return rc;
	}
	r->rate = cfg ? (uint64_t)cfg->u.rng.rate_kib * 1024 : 0;
	r->tokens = (double)r->rate;
	r->refill_ns = rng_now_ns();
	ev_timer_init(&r->wait, rng_wait_cb, RNG_WAIT_S, 0.);
	ev_idle_init(&r->more, rng_more_cb);
	*out = &r->vdev;
	return 0;
}

static void rng_destroy(struct vdev *d)
{
	struct rng *r = rng_of(d);

	rng_stop_watchers(r);
	vdev_fini(d);
	free(r);
}

const struct vdev_ops vdev_rng_ops = {
	.type = "rng",
	.device_id = RNG_DEVICE_ID,
	.create = rng_create,
	.reset = rng_reset,
	.queue_notify = rng_queue_notify,
	.destroy = rng_destroy,
};
