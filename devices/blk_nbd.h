/*
 * The NBD engine of virtio-blk (devices/blk.c): one libnbd connection per disk, driven from the
 * libev loop (no thread), with reconnects and a per-request deadline. blk.c parses and checks
 * the guest's requests, bounces their data into one contiguous buffer each and hands commands
 * here; completions come back through the done callback, from the loop, never from inside
 * libnbd, followed by one batch callback so the guest gets one interrupt per batch.
 */
#ifndef XVD_BLK_NBD_H
#define XVD_BLK_NBD_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

/* What a block request does; shared by blk.c and its engines. */
enum blk_op { BLK_OP_READ, BLK_OP_WRITE, BLK_OP_FLUSH, BLK_OP_DISCARD, BLK_OP_WZ };

struct blk_nbd;

struct blk_nbd_cmd {
	/* Set by the caller before blk_nbd_submit(). */
	uint8_t op;                 /* enum blk_op */
	bool fua;                   /* must be durable when completed (writethrough) */
	bool unmap;                 /* write-zeroes may deallocate */
	uint64_t off, len;          /* bytes */
	void *buf;                  /* len bytes, reads and writes only */
	/* Set by the engine: 0, or -errno (-ETIMEDOUT past io_timeout) when done. */
	int res;
	/*
	 * Set by an engine that answers past io_timeout while its library still writes into buf
	 * (RBD): done is then called twice, first with late set (answer the guest, keep buf), then
	 * with late clear once the engine let go of buf (free it; res is meaningless then).
	 */
	bool late;
	/* The engine's. */
	uint8_t state;
	uint8_t stage;              /* 1: the write is done, its flush (writethrough) is out */
	uint32_t gen;               /* the connection it was sent on */
	uint64_t flush_seq;         /* flush: the writes it covers */
	ev_tstamp deadline;
	struct blk_nbd_cmd *prev, *next;   /* every command the engine holds, oldest first */
	struct blk_nbd *n;
	void *handle;               /* RBD: the command's rbd_completion_t */
};

/* The engines' lists of the commands they hold, oldest first (prev / next). */
static inline void blk_cmd_append(struct blk_nbd_cmd **head, struct blk_nbd_cmd **tail,
				  struct blk_nbd_cmd *c)
{
	c->next = NULL;
	c->prev = *tail;
	if (*tail)
		(*tail)->next = c;
	else
		*head = c;
	*tail = c;
}

static inline void blk_cmd_remove(struct blk_nbd_cmd **head, struct blk_nbd_cmd **tail,
				  struct blk_nbd_cmd *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		*tail = c->prev;
	c->prev = c->next = NULL;
}

/* The export, as the server describes it (refreshed at every reconnect). */
struct blk_nbd_info {
	uint64_t size;              /* bytes */
	uint32_t pref_block;        /* preferred block size, 0 when not advertised */
	bool readonly, can_flush, can_fua, can_trim, can_zero;
};

typedef void blk_nbd_done_fn(struct blk_nbd_cmd *c, void *opaque);
typedef void blk_nbd_batch_fn(void *opaque);

/* TLS credentials for an nbds URI (the [block] tls_* keys); NULL or "": not given. */
struct blk_nbd_tls {
	const char *psk_file;       /* USER:HEXKEY lines */
	const char *certificates;   /* X.509 directory: ca-cert.pem, client-cert.pem, ... */
	const char *username;       /* the PSK identity */
};

/*
 * Connect to uri (nbd_connect_uri forms) now, retrying with a logged backoff for at most
 * io_timeout seconds (blocking: this runs at device creation). tls (NULL: none) is required
 * for, and only used with, nbds URIs. 0 or -errno.
 */
int blk_nbd_open(struct ev_loop *loop, const char *name, const char *uri,
		 const struct blk_nbd_tls *tls, unsigned io_timeout, blk_nbd_done_fn *done,
		 blk_nbd_batch_fn *batch, void *opaque, struct blk_nbd **out);
const struct blk_nbd_info *blk_nbd_info(const struct blk_nbd *n);
void blk_nbd_set_timeout(struct blk_nbd *n, unsigned io_timeout);
/* New credentials (a reload: a rotated key) for the next connection; an nbds URI only. */
void blk_nbd_set_tls(struct blk_nbd *n, const struct blk_nbd_tls *tls);

/* Send c now, or hold it until the connection is back; it completes through done either way. */
void blk_nbd_submit(struct blk_nbd *n, struct blk_nbd_cmd *c);

/* Commands held: waiting for a connection, or sent and not answered. */
unsigned blk_nbd_held(const struct blk_nbd *n);

/* Every held command (fn may not submit or complete commands). */
void blk_nbd_foreach(struct blk_nbd *n, void (*fn)(struct blk_nbd_cmd *c, void *opaque),
		     void *opaque);

/* Reset: commands not sent yet complete now with -ECANCELED (through done, no batch call). */
void blk_nbd_cancel_waiting(struct blk_nbd *n);

/* Wait (blocking) up to wait_ms for the commands on the wire; true when none is left. */
bool blk_nbd_drain(struct blk_nbd *n, int wait_ms);

/* Complete every held command with err now (through done, no batch call). */
void blk_nbd_fail_all(struct blk_nbd *n, int err);

/* Close the connection, then hand every command still held to release (libnbd holds none). */
void blk_nbd_close(struct blk_nbd *n, void (*release)(struct blk_nbd_cmd *c, void *opaque),
		   void *opaque);

#endif
