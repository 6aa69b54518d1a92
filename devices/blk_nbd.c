/*
 * virtio-blk's NBD engine: libnbd's asynchronous API on the host's libev loop.
 *
 * The socket is an ev_io watcher re-armed for read and/or write as nbd_aio_get_direction() says
 * after every call into libnbd. Completion callbacks run inside libnbd (its lock held), so they
 * only record the result; the loop side (nbd_process) completes commands afterwards and
 * calls the batch callback once.
 *
 * Connection states: down (h == NULL, the retry timer armed, backing off 50 ms .. 2 s),
 * connecting (h, !ready), ready. A command is WAITING (held, not on the wire), SENT, or DONE
 * (result recorded, not yet handed back). When a ready connection dies, every SENT command and
 * every DONE one that failed goes back to WAITING and is sent again on the next connection: a
 * write is acknowledged only after the server replied, so nothing acknowledged is lost by a
 * resend, and a read's buffer is only copied to the guest on success.
 *
 * Durability across a reconnect: a flush covers the writes its connection completed. Writes the
 * guest saw completed on a connection that died before a flush covered them may be gone (the
 * server may have lost its cache), and no flush on a later connection covers them. Then the
 * next guest flush fails (IOERR) once: the guest learns that what it flushed may not be durable. Writethrough
 * writes (FUA, or a write followed by its own flush) are durable before they complete.
 *
 * Deadlines: every command must complete within io_timeout of its submission, reconnects
 * included, or it fails with -ETIMEDOUT. A command on the wire past its deadline means the
 * server hangs: the connection is dropped (and retried) like a dead one; so is a connection
 * whose handshake takes longer than io_timeout.
 *
 * Built when libnbd is found (XVD_HAVE_NBD); devices/blk_nbd_none.c stands in otherwise.
 */
#ifdef XVD_HAVE_NBD
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/blk_nbd.h"
#include "lib/log.h"
#include "lib/util.h"

#define NBD_TICK_S       0.25      /* deadline checks while commands are held */
#define NBD_RETRY_MIN_S  0.05
#define NBD_RETRY_MAX_S  2.0

enum { CMD_WAITING, CMD_SENT, CMD_DONE };

struct blk_nbd {
	struct ev_loop *loop;
	char name[64];
	char *uri;
	bool tls;                        /* an nbds URI: TLS required, with these credentials */
	char psk_file[256], certificates[256], username[64];   /* the config's sizes */
	unsigned timeout;                /* io_timeout, seconds */
	struct nbd_handle *h;            /* NULL while down */
	bool ready;                      /* handshake done */
	bool closing;                    /* inside nbd_close(): callbacks touch nothing */
	bool any_done;                   /* some command is DONE */
	uint32_t gen;                    /* bumped when a handle goes */
	ev_io io;
	int io_fd, io_events;            /* what io watches now */
	ev_timer retry;                  /* down: the next connection attempt */
	ev_timer tick;                   /* deadlines, while commands are held */
	ev_idle later;                   /* results recorded outside an I/O callback */
	double backoff;
	ev_tstamp connect_start;         /* of the attempt in progress */
	unsigned attempts;               /* failed attempts since the last ready connection */
	char why[160];                   /* the last libnbd error */
	int err;                         /* and its errno (0 when libnbd gave none) */
	struct blk_nbd_cmd *head, *tail;
	unsigned held;
	uint64_t wseq, fseq;             /* this connection: writes completed, covered by a flush */
	bool maybe_lost;                 /* a dead connection had uncovered writes */
	struct blk_nbd_info info;
	blk_nbd_done_fn *done;
	blk_nbd_batch_fn *batch;
	void *opaque;
};

static void nbd_process(struct blk_nbd *n);

static void nbd_note_error(struct blk_nbd *n)
{
	const char *e = nbd_get_error();

	snprintf(n->why, sizeof(n->why), "%s", e ? e : "unknown error");
	n->err = nbd_get_errno();
}

/* ---- the command list ---------------------------------------------------------------------- */

static void nbd_link(struct blk_nbd *n, struct blk_nbd_cmd *c)
{
	blk_cmd_append(&n->head, &n->tail, c);
	n->held++;
}

static void nbd_unlink(struct blk_nbd *n, struct blk_nbd_cmd *c)
{
	blk_cmd_remove(&n->head, &n->tail, c);
	n->held--;
}

static void nbd_set_done(struct blk_nbd *n, struct blk_nbd_cmd *c, int res)
{
	c->res = res;
	c->state = CMD_DONE;
	n->any_done = true;
}

/* ---- the socket ---------------------------------------------------------------------------- */

static void nbd_rearm(struct blk_nbd *n)
{
	int fd = n->h ? nbd_aio_get_fd(n->h) : -1, events = 0;

	if (fd >= 0) {
		unsigned dir = nbd_aio_get_direction(n->h);

		events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? EV_READ : 0) |
			 ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? EV_WRITE : 0);
	}
	if (fd == n->io_fd && events == n->io_events)
		return;
	ev_io_stop(n->loop, &n->io);
	n->io_fd = fd;
	n->io_events = events;
	if (fd >= 0 && events) {
		ev_io_set(&n->io, fd, events);
		ev_io_start(n->loop, &n->io);
	}
}

static void nbd_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct blk_nbd *n = container_of(w, struct blk_nbd, io);
	int rc = 0;

	(void)loop;
	if ((revents & EV_READ) && (nbd_aio_get_direction(n->h) & LIBNBD_AIO_DIRECTION_READ))
		rc = nbd_aio_notify_read(n->h);
	if (rc == 0 && (revents & EV_WRITE) &&
	    (nbd_aio_get_direction(n->h) & LIBNBD_AIO_DIRECTION_WRITE))
		rc = nbd_aio_notify_write(n->h);
	if (rc < 0)
		nbd_note_error(n);
	nbd_process(n);
}

/* libnbd's completion callback: record only (libnbd's lock is held). */
static int nbd_cmd_cb(void *user_data, int *error)
{
	struct blk_nbd_cmd *c = user_data;
	struct blk_nbd *n = c->n;

	if (n->closing || c->state != CMD_SENT || c->gen != n->gen)
		return 1;
	nbd_set_done(n, c, *error ? -*error : 0);
	return 1;
}

static int64_t nbd_issue(struct blk_nbd *n, struct blk_nbd_cmd *c)
{
	nbd_completion_callback cb = { .callback = nbd_cmd_cb, .user_data = c };
	uint32_t fua = c->fua && n->info.can_fua ? LIBNBD_CMD_FLAG_FUA : 0;

	if (c->stage || c->op == BLK_OP_FLUSH) {
		c->flush_seq = n->wseq;
		return nbd_aio_flush(n->h, cb, 0);
	}
	switch (c->op) {
	case BLK_OP_READ:
		return nbd_aio_pread(n->h, c->buf, c->len, c->off, cb, 0);
	case BLK_OP_WRITE:
		return nbd_aio_pwrite(n->h, c->buf, c->len, c->off, cb, fua);
	case BLK_OP_DISCARD:
		return nbd_aio_trim(n->h, c->len, c->off, cb, fua);
	default:
		return nbd_aio_zero(n->h, c->len, c->off, cb,
				    fua | (c->unmap ? 0 : LIBNBD_CMD_FLAG_NO_HOLE));
	}
}

/* Put c on the wire (the connection is ready). */
static void nbd_send(struct blk_nbd *n, struct blk_nbd_cmd *c)
{
	if ((c->stage || c->op == BLK_OP_FLUSH) && !n->info.can_flush) {
		/* No flush offered: the server has no volatile cache to write back. */
		nbd_set_done(n, c, 0);
		return;
	}
	c->state = CMD_SENT;
	c->gen = n->gen;
	if (nbd_issue(n, c) >= 0 || c->state != CMD_SENT)
		return;
	nbd_note_error(n);
	if (nbd_aio_is_dead(n->h) || nbd_aio_is_closed(n->h)) {
		c->state = CMD_WAITING;    /* resent after the reconnect nbd_process() starts */
		return;
	}
	log_warn("%s: NBD command refused: %s", n->name, n->why);
	nbd_set_done(n, c, n->err ? -n->err : -EIO);
}

/* ---- connections --------------------------------------------------------------------------- */

static void nbd_drop_handle(struct blk_nbd *n)
{
	ev_io_stop(n->loop, &n->io);
	n->io_fd = -1;
	n->io_events = 0;
	if (n->h) {
		n->closing = true;
		nbd_close(n->h);
		n->closing = false;
	}
	n->h = NULL;
	n->ready = false;
	n->gen++;
}

/* Credentials, before the URI (whose query may not name files). */
static int nbd_tls_setup(struct blk_nbd *n, struct nbd_handle *h)
{
	if (nbd_set_tls(h, LIBNBD_TLS_REQUIRE) < 0)
		return -1;
	if (n->psk_file[0] && nbd_set_tls_psk_file(h, n->psk_file) < 0)
		return -1;
	if (n->certificates[0] && nbd_set_tls_certificates(h, n->certificates) < 0)
		return -1;
	if (n->username[0] && nbd_set_tls_username(h, n->username) < 0)
		return -1;
	return 0;
}

static int nbd_connect_start(struct blk_nbd *n)
{
	struct nbd_handle *h = nbd_create();

	if (!h) {
		nbd_note_error(n);
		return -1;
	}
	n->h = h;
	n->ready = false;
	n->connect_start = ev_now(n->loop);
	/*
	 * Only what the configuration checked: TCP or a unix socket; TLS exactly when the URI
	 * says nbds, with the credentials of the tls_* keys; no local files named by the URI.
	 */
	if (nbd_set_uri_allow_transports(h, LIBNBD_ALLOW_TRANSPORT_TCP |
					    LIBNBD_ALLOW_TRANSPORT_UNIX) < 0 ||
	    nbd_set_uri_allow_tls(h, n->tls ? LIBNBD_TLS_REQUIRE : LIBNBD_TLS_DISABLE) < 0 ||
	    (n->tls && nbd_tls_setup(n, h) < 0) ||
	    nbd_set_uri_allow_local_file(h, false) < 0 || nbd_aio_connect_uri(h, n->uri) < 0) {
		nbd_note_error(n);
		return -1;
	}
	return 0;
}

static void nbd_read_info(struct blk_nbd *n)
{
	int64_t size = nbd_get_size(n->h), pref = nbd_get_block_size(n->h, LIBNBD_SIZE_PREFERRED);
	struct blk_nbd_info i = {
		.size = size > 0 ? (uint64_t)size : 0,
		.pref_block = pref > 0 && pref <= (1 << 20) ? (uint32_t)pref : 0,
		.readonly = nbd_is_read_only(n->h) == 1,
		.can_flush = nbd_can_flush(n->h) == 1,
		.can_fua = nbd_can_fua(n->h) == 1,
		.can_trim = nbd_can_trim(n->h) == 1,
		.can_zero = nbd_can_zero(n->h) == 1,
	};

	if (n->info.size && i.size != n->info.size)
		log_warn("%s: the export is %" PRIu64 " bytes now (was %" PRIu64 "); the guest sees "
			 "the new size after a resize", n->name, i.size, n->info.size);
	n->info = i;
}

/* The handshake is done: take the export's description, send what waited. */
static void nbd_on_ready(struct blk_nbd *n)
{
	nbd_read_info(n);
	if (n->attempts)
		log_notice("%s: connected to %s after %u failed attempt(s)", n->name, n->uri,
			   n->attempts);
	n->ready = true;
	n->attempts = 0;
	n->backoff = NBD_RETRY_MIN_S;
	n->wseq = n->fseq = 0;
	for (struct blk_nbd_cmd *c = n->head; c && n->ready; c = c->next)
		if (c->state == CMD_WAITING)
			nbd_send(n, c);
}

static void nbd_schedule_retry(struct blk_nbd *n)
{
	ev_timer_stop(n->loop, &n->retry);
	ev_timer_set(&n->retry, n->backoff, 0.);
	ev_timer_start(n->loop, &n->retry);
	n->backoff = n->backoff * 2 > NBD_RETRY_MAX_S ? NBD_RETRY_MAX_S : n->backoff * 2;
}

/* A connection attempt failed: log the 1st, 2nd, 4th, 8th ... and try again later. */
static void nbd_connect_failed(struct blk_nbd *n)
{
	nbd_drop_handle(n);
	n->attempts++;
	if (!(n->attempts & (n->attempts - 1)))
		log_warn("%s: cannot connect to %s (attempt %u): %s; retrying", n->name, n->uri,
			 n->attempts, n->why);
	nbd_schedule_retry(n);
}

/* A ready connection died (or hangs): everything not answered goes back to waiting. */
static void nbd_conn_lost(struct blk_nbd *n)
{
	unsigned resend = 0;

	if (n->fseq < n->wseq)
		n->maybe_lost = true;
	nbd_drop_handle(n);
	for (struct blk_nbd_cmd *c = n->head; c; c = c->next) {
		if (c->state == CMD_SENT || (c->state == CMD_DONE && c->res < 0 && c->gen + 1 == n->gen)) {
			c->state = CMD_WAITING;
			c->stage = 0;   /* the write again, not only its flush: the data may be gone */
			c->res = 0;
			resend++;
		}
	}
	log_warn("%s: connection to %s lost (%s); %u request(s) wait for the reconnect", n->name,
		 n->uri, n->why, resend);
	n->backoff = NBD_RETRY_MIN_S;
	nbd_schedule_retry(n);
}

static void nbd_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct blk_nbd *n = container_of(w, struct blk_nbd, retry);

	(void)loop;
	(void)revents;
	if (n->h)
		return;
	if (nbd_connect_start(n) < 0) {
		nbd_connect_failed(n);
		return;
	}
	nbd_process(n);
}

/* ---- completing ---------------------------------------------------------------------------- */

/* A writethrough write the server cannot FUA: its flush goes out before it completes. */
static bool nbd_followup(struct blk_nbd *n, struct blk_nbd_cmd *c)
{
	if (c->res || c->stage || !c->fua || c->op == BLK_OP_READ || c->op == BLK_OP_FLUSH ||
	    n->info.can_fua || !n->info.can_flush || !n->ready)
		return false;
	c->stage = 1;
	nbd_send(n, c);
	return true;
}

static void nbd_complete(struct blk_nbd *n, struct blk_nbd_cmd *c)
{
	nbd_unlink(n, c);
	if (c->op == BLK_OP_FLUSH && c->res == 0 && n->info.can_flush) {
		if (n->maybe_lost) {
			n->maybe_lost = false;
			log_err("%s: the connection to %s was lost with writes no flush covered; "
				"failing this flush, as they may be lost", n->name, n->uri);
			c->res = -EIO;
		} else if (c->flush_seq > n->fseq) {
			n->fseq = c->flush_seq;
		}
	} else if (c->res == 0 && c->op != BLK_OP_READ && c->op != BLK_OP_FLUSH && !c->fua &&
		   n->info.can_flush) {
		n->wseq++;
	}
	n->done(c, n->opaque);
}

static void nbd_finish_done(struct blk_nbd *n)
{
	struct blk_nbd_cmd *c, *next;
	bool any = false;

	n->any_done = false;
	for (c = n->head; c; c = next) {
		next = c->next;
		if (c->state != CMD_DONE || nbd_followup(n, c))
			continue;
		nbd_complete(n, c);
		any = true;
	}
	if (any)
		n->batch(n->opaque);
}

static void nbd_tick_update(struct blk_nbd *n)
{
	if (n->held && !ev_is_active(&n->tick)) {
		ev_timer_set(&n->tick, NBD_TICK_S, NBD_TICK_S);
		ev_timer_start(n->loop, &n->tick);
	} else if (!n->held) {
		ev_timer_stop(n->loop, &n->tick);
	}
}

/* After every call into libnbd: connection state, then results, then the watcher. */
static void nbd_process(struct blk_nbd *n)
{
	if (n->h && (nbd_aio_is_dead(n->h) || nbd_aio_is_closed(n->h))) {
		if (n->ready)
			nbd_conn_lost(n);
		else
			nbd_connect_failed(n);
	} else if (n->h && !n->ready && nbd_aio_is_ready(n->h)) {
		nbd_on_ready(n);
	}
	if (n->any_done)
		nbd_finish_done(n);
	nbd_rearm(n);
	nbd_tick_update(n);
	if (n->any_done)
		ev_idle_start(n->loop, &n->later);
}

static void nbd_later_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct blk_nbd *n = container_of(w, struct blk_nbd, later);

	(void)revents;
	ev_idle_stop(loop, w);
	nbd_process(n);
}

static void nbd_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct blk_nbd *n = container_of(w, struct blk_nbd, tick);
	ev_tstamp now = ev_now(loop);
	bool hung = false;

	(void)revents;
	/* A server that accepts but never finishes the handshake: try again. */
	if (n->h && !n->ready && now - n->connect_start > n->timeout) {
		snprintf(n->why, sizeof(n->why), "no handshake within io_timeout (%u s)", n->timeout);
		nbd_connect_failed(n);
	}
	for (struct blk_nbd_cmd *c = n->head; c; c = c->next)
		hung |= c->state == CMD_SENT && c->deadline <= now;
	if (hung && n->ready) {
		snprintf(n->why, sizeof(n->why), "no reply within io_timeout (%u s)", n->timeout);
		nbd_conn_lost(n);
	}
	for (struct blk_nbd_cmd *c = n->head; c; c = c->next)
		if (c->state == CMD_WAITING && c->deadline <= now)
			nbd_set_done(n, c, -ETIMEDOUT);
	nbd_process(n);
}

/* ---- the interface ------------------------------------------------------------------------- */

static double nbd_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait for the handshake of the connection just started, until `end`. */
static bool nbd_wait_ready(struct blk_nbd *n, double end)
{
	while (!nbd_aio_is_ready(n->h)) {
		double left = end - nbd_mono();

		if (nbd_aio_is_dead(n->h) || nbd_aio_is_closed(n->h) || left <= 0)
			return false;
		if (nbd_poll(n->h, left > 1 ? 1000 : (int)(left * 1000) + 1) < 0) {
			nbd_note_error(n);
			return false;
		}
	}
	return true;
}

/* At creation: a server that is not there yet is retried (logged) for io_timeout seconds. */
static int nbd_connect_blocking(struct blk_nbd *n)
{
	double start = nbd_mono(), end = start + n->timeout, backoff = NBD_RETRY_MIN_S * 4;

	for (;;) {
		if (nbd_connect_start(n) == 0 && nbd_wait_ready(n, end)) {
			nbd_on_ready(n);
			nbd_rearm(n);
			return 0;
		}
		int err = n->err > 0 ? n->err : ECONNREFUSED;

		if (!n->why[0])
			snprintf(n->why, sizeof(n->why), "no handshake within %u s", n->timeout);
		nbd_drop_handle(n);
		n->attempts++;
		if (nbd_mono() + backoff >= end) {
			log_err("%s: cannot connect to %s within io_timeout (%u s): %s", n->name,
				n->uri, n->timeout, n->why);
			return -err;
		}
		log_warn("%s: cannot connect to %s: %s; retrying in %.1f s", n->name, n->uri,
			 n->why, backoff);
		struct timespec ts = { (time_t)backoff, (long)((backoff - (time_t)backoff) * 1e9) };

		nanosleep(&ts, NULL);
		n->why[0] = '\0';
		backoff = backoff * 2 > NBD_RETRY_MAX_S ? NBD_RETRY_MAX_S : backoff * 2;
	}
}

int blk_nbd_open(struct ev_loop *loop, const char *name, const char *uri,
		 const struct blk_nbd_tls *tls, unsigned io_timeout, blk_nbd_done_fn *done,
		 blk_nbd_batch_fn *batch, void *opaque, struct blk_nbd **out)
{
	struct blk_nbd *n = calloc(1, sizeof(*n));
	int rc;

	if (!n || !(n->uri = strdup(uri))) {
		free(n);
		return -ENOMEM;
	}
	n->tls = strncmp(uri, "nbds", 4) == 0;
	blk_nbd_set_tls(n, tls);
	n->loop = loop;
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->timeout = io_timeout ? io_timeout : 30;
	n->done = done;
	n->batch = batch;
	n->opaque = opaque;
	n->io_fd = -1;
	n->backoff = NBD_RETRY_MIN_S;
	ev_io_init(&n->io, nbd_io_cb, 0, EV_READ);
	ev_init(&n->retry, nbd_retry_cb);
	ev_init(&n->tick, nbd_tick_cb);
	ev_idle_init(&n->later, nbd_later_cb);
	rc = nbd_connect_blocking(n);
	if (rc < 0) {
		free(n->uri);
		free(n);
		return rc;
	}
	*out = n;
	return 0;
}

const struct blk_nbd_info *blk_nbd_info(const struct blk_nbd *n)
{
	return &n->info;
}

void blk_nbd_set_tls(struct blk_nbd *n, const struct blk_nbd_tls *tls)
{
	if (!n->tls || !tls)
		return;
	snprintf(n->psk_file, sizeof(n->psk_file), "%s", tls->psk_file ? tls->psk_file : "");
	snprintf(n->certificates, sizeof(n->certificates), "%s",
		 tls->certificates ? tls->certificates : "");
	snprintf(n->username, sizeof(n->username), "%s", tls->username ? tls->username : "");
}

void blk_nbd_set_timeout(struct blk_nbd *n, unsigned io_timeout)
{
	if (io_timeout)
		n->timeout = io_timeout;
}

void blk_nbd_submit(struct blk_nbd *n, struct blk_nbd_cmd *c)
{
	c->n = n;
	c->res = 0;
	c->stage = 0;
	c->state = CMD_WAITING;
	c->deadline = ev_now(n->loop) + n->timeout;
	nbd_link(n, c);
	if (n->ready)
		nbd_send(n, c);
	nbd_rearm(n);
	nbd_tick_update(n);
	/* A refused command, or a dead connection noticed while sending: handled from the loop. */
	if (n->any_done || (n->h && nbd_aio_is_dead(n->h)))
		ev_idle_start(n->loop, &n->later);
}

unsigned blk_nbd_held(const struct blk_nbd *n)
{
	return n->held;
}

void blk_nbd_foreach(struct blk_nbd *n, void (*fn)(struct blk_nbd_cmd *c, void *opaque),
		     void *opaque)
{
	for (struct blk_nbd_cmd *c = n->head; c; c = c->next)
		fn(c, opaque);
}

void blk_nbd_cancel_waiting(struct blk_nbd *n)
{
	struct blk_nbd_cmd *c, *next;

	for (c = n->head; c; c = next) {
		next = c->next;
		if (c->state != CMD_WAITING)
			continue;
		nbd_unlink(n, c);
		c->res = -ECANCELED;
		n->done(c, n->opaque);
	}
	nbd_tick_update(n);
}

static bool nbd_any_sent(const struct blk_nbd *n)
{
	for (const struct blk_nbd_cmd *c = n->head; c; c = c->next)
		if (c->state == CMD_SENT)
			return true;
	return false;
}

bool blk_nbd_drain(struct blk_nbd *n, int wait_ms)
{
	double end = nbd_mono() + wait_ms / 1000.0;

	nbd_process(n);
	while (n->ready && nbd_any_sent(n)) {
		double left = end - nbd_mono();

		if (left <= 0)
			break;
		if (nbd_poll(n->h, left > 1 ? 1000 : (int)(left * 1000) + 1) < 0)
			nbd_note_error(n);
		nbd_process(n);
	}
	return !nbd_any_sent(n);
}

void blk_nbd_fail_all(struct blk_nbd *n, int err)
{
	struct blk_nbd_cmd *c;

	/* libnbd must forget the buffers of commands on the wire before they are handed back. */
	if (nbd_any_sent(n)) {
		snprintf(n->why, sizeof(n->why), "requests abandoned");
		nbd_conn_lost(n);
	}
	while ((c = n->head)) {
		nbd_unlink(n, c);
		c->res = err;
		n->done(c, n->opaque);
	}
	nbd_tick_update(n);
}

void blk_nbd_close(struct blk_nbd *n, void (*release)(struct blk_nbd_cmd *c, void *opaque),
		   void *opaque)
{
	struct blk_nbd_cmd *c;

	if (!n)
		return;
	nbd_drop_handle(n);
	ev_timer_stop(n->loop, &n->retry);
	ev_timer_stop(n->loop, &n->tick);
	ev_idle_stop(n->loop, &n->later);
	while ((c = n->head)) {
		nbd_unlink(n, c);
		release(c, opaque);
	}
	free(n->uri);
	free(n);
}

#endif /* XVD_HAVE_NBD */
