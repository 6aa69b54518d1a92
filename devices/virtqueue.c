/*
 * The split virtqueue, device side. Every value read from guest memory is read once into a
 * local, then validated; nothing is popped from a queue once it is broken.
 */
#include "devices/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_ring.h"
#include "lib/log.h"
#include "lib/testpoint.h"

/* The ring feature bits this file acts on (virtio 1.2 §6). */
#define VQ_F_INDIRECT_DESC 28
#define VQ_F_EVENT_IDX     29

/* The details of a bad ring go to the debug log; the transport logs the error itself. */
static struct ratelimit vq_rl = RATELIMIT_DEFAULT;

/* A single load of a 16-bit ring field the guest may change at any time. */
static uint16_t vq_load16(const uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static void vq_store16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELAXED);
}

static uint16_t vq_avail_idx(struct virtqueue *vq)
{
	/*
	 * Acquire: pairs with the driver's write barrier before it publishes avail->idx, so the
	 * ring entries and descriptors of every chain up to idx are visible to our later reads.
	 */
	return le16toh(__atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE));
}

static uint16_t *vq_used_event(struct virtqueue *vq)
{
	return &vq->avail->ring[vq->num];
}

static uint16_t *vq_avail_event(struct virtqueue *vq)
{
	return (uint16_t *)&vq->used->ring[vq->num];
}

static bool vq_is_pow2(uint32_t n)
{
	return n != 0 && (n & (n - 1)) == 0;
}

static void vq_unmap_rings(struct virtqueue *vq)
{
	if (vq->gm) {
		gmem_unmap(vq->gm, vq->desc, vq->desc_len);
		gmem_unmap(vq->gm, vq->avail, vq->avail_len);
		gmem_unmap(vq->gm, vq->used, vq->used_len);
	}
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	vq->desc_len = vq->avail_len = vq->used_len = 0;
}

/* Compiler barrier: the persistent record's writes stay in program order (a crash stops there). */
#define vq_rec_order() __asm__ __volatile__("" ::: "memory")

/* Free the spare elements (reset, teardown). */
static void vq_spare_clear(struct virtqueue *vq)
{
	while (vq->spare) {
		struct vq_elem *e = vq->spare;

		vq->spare = e->next_spare;
		free(e);
	}
	vq->nspare = 0;
}

void vq_reset(struct virtqueue *vq)
{
	if (vq->rec) {
		vq->rec->enabled = 0;
		vq_rec_order();
		memset(vq->rec, 0, sizeof(*vq->rec));
	}
	vq_unmap_rings(vq);
	vq_spare_clear(vq);
	free(vq->scratch);
	vq->scratch = NULL;
	free(vq->replay);
	vq->replay = NULL;
	vq->nreplay = vq->replayed = 0;
	vq->enabled = false;
	vq->broken = false;
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->signalled_used = 0;
	vq->signalled_valid = false;
	vq->inflight = 0;
	memset(vq->inflight_map, 0, sizeof(vq->inflight_map));
	/* Elements popped before this point are recognised by their old generation. */
	vq->gen++;
}

static int vq_map_rings(struct virtqueue *vq, uint16_t num, uint64_t desc, uint64_t avail,
			uint64_t used)
{
	vq->desc_len = vring_desc_size(num);
	vq->avail_len = vring_avail_size(num);
	vq->used_len = vring_used_size(num);
	vq->desc = gmem_map(vq->gm, desc, vq->desc_len, GMEM_READ);
	vq->avail = gmem_map(vq->gm, avail, vq->avail_len, GMEM_READ);
	/* The device writes used entries and avail_event; it never reads this ring. */
	vq->used = gmem_map(vq->gm, used, vq->used_len, GMEM_WRITE);
	if (!vq->desc || !vq->avail || !vq->used) {
		vq_unmap_rings(vq);
		return -EINVAL;
	}
	return 0;
}

int vq_configure(struct virtqueue *vq, struct gmem *gm, uint16_t index, uint16_t num,
		 uint16_t max, uint64_t desc, uint64_t avail, uint64_t used, uint64_t features)
{
	vq_reset(vq);
	vq->gm = gm;
	vq->index = index;
	if (!gm || max > VQ_MAX_SIZE || !vq_is_pow2(num) || num > max)
		return -EINVAL;
	/* virtio 1.2 §2.7: descriptor table 16, avail ring 2, used ring 4 bytes aligned. */
	if ((desc & 15) || (avail & 1) || (used & 3))
		return -EINVAL;
	if (vq_map_rings(vq, num, desc, avail, used) < 0)
		return -EINVAL;
	vq->scratch = calloc(VQ_MAX_SIZE, sizeof(*vq->scratch));
	if (!vq->scratch) {
		vq_unmap_rings(vq);
		return -ENOMEM;
	}
	vq->num = num;
	vq->desc_gpa = desc;
	vq->avail_gpa = avail;
	vq->used_gpa = used;
	vq->event_idx = (features >> VQ_F_EVENT_IDX) & 1;
	vq->indirect = (features >> VQ_F_INDIRECT_DESC) & 1;
	vq->enabled = true;
	if (vq->rec) {
		*vq->rec = (struct vq_state){ .num = num, .desc_gpa = desc, .avail_gpa = avail,
					      .used_gpa = used };
		vq_rec_order();
		vq->rec->enabled = 1;
	}
	return 0;
}

/* The walk of one chain: where descriptors come from and what has been mapped so far. */
struct vq_walk {
	const uint8_t *table;    /* the ring's descriptor table, or a mapped indirect table */
	uint32_t table_n;        /* entries in table: bounds every index and the chain length */
	void *ind_map;           /* the indirect table's mapping, when inside one */
	size_t ind_len;
	uint32_t n;              /* entries of vq->scratch filled (each one mapped) */
	uint16_t n_out;
	uint64_t out_len, in_len;
	bool seen_write;
};

static void vq_read_desc(const struct vq_walk *w, uint32_t i, struct vring_desc *d)
{
	/* One copy into private memory (indirect tables need not be aligned), then converted. */
	memcpy(d, w->table + (size_t)i * sizeof(*d), sizeof(*d));
	d->addr = le64toh(d->addr);
	d->len = le32toh(d->len);
	d->flags = le16toh(d->flags);
	d->next = le16toh(d->next);
}

static void vq_walk_undo(struct virtqueue *vq, struct vq_walk *w)
{
	for (uint32_t i = 0; i < w->n; i++)
		gmem_unmap(vq->gm, vq->scratch[i].iov_base, vq->scratch[i].iov_len);
	w->n = 0;
	gmem_unmap(vq->gm, w->ind_map, w->ind_len);
	w->ind_map = NULL;
}

static int vq_enter_indirect(struct virtqueue *vq, struct vq_walk *w, const struct vring_desc *d)
{
	if (!vq->indirect)
		return -1;
	if (w->ind_map)          /* an indirect descriptor inside an indirect table */
		return -2;
	if (d->flags & VRING_DESC_F_NEXT)
		return -3;
	if (d->len == 0 || d->len % sizeof(struct vring_desc) ||
	    d->len / sizeof(struct vring_desc) > VQ_MAX_SIZE)
		return -4;
	w->ind_map = gmem_map(vq->gm, d->addr, d->len, GMEM_READ);
	if (!w->ind_map)
		return -5;
	w->ind_len = d->len;
	w->table = w->ind_map;
	w->table_n = d->len / sizeof(struct vring_desc);
	return 0;
}

static int vq_add_buf(struct virtqueue *vq, struct vq_walk *w, const struct vring_desc *d)
{
	bool write = d->flags & VRING_DESC_F_WRITE;

	if (!write && w->seen_write)
		return -6;       /* readable buffers must precede writable ones */
	w->seen_write |= write;
	if (d->len == 0)
		return 0;        /* nothing to map or transfer */
	if (w->n == VQ_MAX_SIZE)
		return -7;
	if (!gmem_range_ok(d->addr, d->len))
		return -8;
	void *p = gmem_map(vq->gm, d->addr, d->len, write ? GMEM_WRITE : GMEM_READ);

	if (!p)
		return -9;
	vq->scratch[w->n++] = (struct iovec){ .iov_base = p, .iov_len = d->len };
	if (write) {
		w->in_len += d->len;
	} else {
		w->out_len += d->len;
		w->n_out++;
	}
	if (w->in_len + w->out_len > UINT32_MAX)
		return -10;
	return 0;
}

static const char *const vq_walk_errors[] = {
	"", "indirect descriptor not negotiated", "nested indirect table",
	"indirect descriptor with NEXT", "bad indirect table length", "indirect table not mapped",
	"readable buffer after a writable one", "more buffers than the iovec holds",
	"buffer address wraps", "buffer not mapped or wrong permission",
	"chain longer than 4 GiB", "descriptor index out of range", "chain loops",
	"head published again while in flight",
};

/* Walk the chain at head into vq->scratch; 0, or a negative index into vq_walk_errors. */
static int vq_walk_chain(struct virtqueue *vq, struct vq_walk *w, uint16_t head, bool replay)
{
	uint32_t i = head, steps = 0;
	struct vring_desc d;
	int rc;

	if (head >= vq->num)
		return -11;
	/* An adopted head is in flight by definition: it is being taken again. */
	if (vq_head_inflight(vq, head) && !replay)
		return -13;
	for (;;) {
		vq_read_desc(w, i, &d);
		/* A chain visits each entry of its table at most once, so this bounds any loop. */
		if (++steps > w->table_n)
			return -12;
		if (d.flags & VRING_DESC_F_INDIRECT) {
			rc = vq_enter_indirect(vq, w, &d);
			if (rc < 0)
				return rc;
			i = 0;
			steps = 0;
			continue;
		}
		rc = vq_add_buf(vq, w, &d);
		if (rc < 0)
			return rc;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		if (d.next >= w->table_n)
			return -11;
		i = d.next;
	}
}

/* The one place a head enters or leaves the in-flight set (and the count follows it). */
static void vq_head_mark(struct virtqueue *vq, uint16_t head, bool inflight)
{
	uint64_t bit = UINT64_C(1) << (head % 64);

	if (inflight) {
		vq->inflight_map[head / 64] |= bit;
		vq->inflight++;
	} else {
		vq->inflight_map[head / 64] &= ~bit;
		vq->inflight--;
	}
	if (vq->rec)
		vq->rec->inflight_map[head / 64] = vq->inflight_map[head / 64];
}

/* A spare element for a chain of n buffers, or a new one (n > VQ_ELEM_IOV: exactly sized). */
static struct vq_elem *vq_elem_alloc(struct virtqueue *vq, unsigned n)
{
	struct vq_elem *e;

	if (n <= VQ_ELEM_IOV && vq->spare) {
		e = vq->spare;
		vq->spare = e->next_spare;
		vq->nspare--;
		return e;
	}
	e = malloc(sizeof(*e) + (n <= VQ_ELEM_IOV ? VQ_ELEM_IOV : n) * sizeof(struct iovec));
	if (e)
		e->spare_ok = n <= VQ_ELEM_IOV;
	return e;
}

/*
 * The device let go of e (already unmapped): keep it for the next pop when it belongs to the
 * queue as it is now and the spares are fewer than the queue holds; free it otherwise.
 */
static void vq_elem_release(struct vq_elem *e)
{
	struct virtqueue *vq = e->vq;

	if (e->spare_ok && e->gen == vq->gen && vq->enabled && vq->nspare < vq->num) {
		e->next_spare = vq->spare;
		vq->spare = e;
		vq->nspare++;
		return;
	}
	free(e);
}

static struct vq_elem *vq_make_elem(struct virtqueue *vq, const struct vq_walk *w, uint16_t head)
{
	struct vq_elem *e = vq_elem_alloc(vq, w->n);

	if (!e)
		return NULL;
	e->vq = vq;
	e->gen = vq->gen;
	e->head = head;
	e->n_out = w->n_out;
	e->n_in = (uint16_t)(w->n - w->n_out);
	e->out_len = (uint32_t)w->out_len;
	e->in_len = (uint32_t)w->in_len;
	e->dev_priv = NULL;
	memcpy(e->iov, vq->scratch, w->n * sizeof(struct iovec));
	return e;
}

static struct vq_elem *vq_fail(struct virtqueue *vq, int *err, const char *why)
{
	vq->broken = true;
	if (vq->rec)
		vq->rec->broken = 1;
	vq->stat_bad_chains++;
	log_rl(&vq_rl, LOG_DEBUG, "queue %u: %s", vq->index, why);
	*err = -EPROTO;
	return NULL;
}

/*
 * How many chains the driver has published beyond last_avail, or -1 when its index is more
 * than a ring's worth ahead (it cannot be: that is a broken ring).
 */
static int vq_pending(struct virtqueue *vq)
{
	uint16_t pending = (uint16_t)(vq_avail_idx(vq) - vq->last_avail);

	return pending > vq->num ? -1 : pending;
}

/*
 * With EVENT_IDX, the ring is empty: ask for a kick at the next chain, then look again, so a
 * chain published between our first look and the avail_event store is not stranded.
 */
static int vq_pending_rearm(struct virtqueue *vq)
{
	vq_store16(vq_avail_event(vq), vq->last_avail);
	/*
	 * Full barrier: the avail_event store must be visible to the driver before we re-read
	 * avail->idx; the driver orders its idx store before reading avail_event the same way.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return vq_pending(vq);
}

/* Walk the chain at head and make its element; NULL (the queue broken) on a bad chain. */
static struct vq_elem *vq_take(struct virtqueue *vq, int *err, uint16_t head, bool replay)
{
	struct vq_walk w = { 0 };
	int rc;

	w.table = (const uint8_t *)vq->desc;
	w.table_n = vq->num;
	rc = vq_walk_chain(vq, &w, head, replay);
	struct vq_elem *e = rc < 0 ? NULL : vq_make_elem(vq, &w, head);

	/* The iovec points at the buffers; the indirect table itself is no longer needed. */
	gmem_unmap(vq->gm, w.ind_map, w.ind_len);
	w.ind_map = NULL;
	if (!e) {
		vq_walk_undo(vq, &w);
		return vq_fail(vq, err, rc < 0 ? vq_walk_errors[-rc] : "out of memory");
	}
	return e;
}

/* The next adopted head, already in flight (no mark, no avail slot consumed). */
static struct vq_elem *vq_pop_replay(struct virtqueue *vq, int *err)
{
	uint16_t head = vq->replay[vq->replayed++];

	if (vq->replayed == vq->nreplay) {
		free(vq->replay);
		vq->replay = NULL;
		vq->nreplay = vq->replayed = 0;
	}
	return vq_take(vq, err, head, true);
}

struct vq_elem *vq_pop(struct virtqueue *vq, int *err)
{
	int pending;

	*err = 0;
	if (!vq->enabled || vq->broken)
		return NULL;
	if (vq->nreplay)
		return vq_pop_replay(vq, err);
	testpoint("vq.pop");
	pending = vq_pending(vq);
	if (pending == 0 && vq->event_idx)
		pending = vq_pending_rearm(vq);
	if (pending < 0)
		return vq_fail(vq, err, "avail index too far ahead");
	if (pending == 0)
		return NULL;
	uint16_t head = vq_load16(&vq->avail->ring[vq->last_avail & (vq->num - 1)]);
	struct vq_elem *e = vq_take(vq, err, head, false);

	if (!e)
		return NULL;
	/* In flight first, then consumed (struct vq_state). */
	vq_head_mark(vq, head, true);
	vq_rec_order();
	testpoint("vq.pop.marked");
	vq->last_avail++;
	if (vq->rec)
		vq->rec->last_avail = vq->last_avail;
	testpoint("vq.popped");
	return e;
}

bool vq_has_work(struct virtqueue *vq)
{
	if (!vq->enabled || vq->broken)
		return false;
	return vq->nreplay || vq_avail_idx(vq) != vq->last_avail;
}

static void vq_unmap_elem(struct vq_elem *e)
{
	for (unsigned i = 0; i < (unsigned)e->n_out + e->n_in; i++)
		gmem_unmap(e->vq->gm, e->iov[i].iov_base, e->iov[i].iov_len);
}

static bool vq_elem_current(const struct vq_elem *e)
{
	return e->gen == e->vq->gen && e->vq->enabled;
}

static void vq_put_used(struct virtqueue *vq, uint16_t head, uint32_t len)
{
	struct vring_used_elem *u = &vq->used->ring[vq->used_idx & (vq->num - 1)];

	u->id = htole32(head);
	u->len = htole32(len);
	vq->used_idx++;
	/* Release: the element above is visible to the driver before the index that publishes it. */
	__atomic_store_n(&vq->used->idx, htole16(vq->used_idx), __ATOMIC_RELEASE);
	testpoint("vq.push.published");
}

/* After the guest sees used->idx: the record follows (struct vq_state). */
static void vq_rec_used(struct virtqueue *vq)
{
	if (!vq->rec)
		return;
	vq_rec_order();
	vq->rec->used_idx = vq->used_idx;
}

void vq_push(struct vq_elem *e, uint32_t written)
{
	struct virtqueue *vq = e->vq;

	/* The buffers are unmapped before the guest may reuse them. */
	vq_unmap_elem(e);
	if (vq_elem_current(e)) {
		testpoint("vq.push");
		vq_put_used(vq, e->head, written < e->in_len ? written : e->in_len);
		vq_head_mark(vq, e->head, false);
		vq_rec_used(vq);
	}
	vq_elem_release(e);
}

void vq_push_many(struct vq_elem *const *e, const uint32_t *written, unsigned n)
{
	struct virtqueue *vq = n ? e[0]->vq : NULL;
	uint16_t idx = vq ? vq->used_idx : 0;

	if (n)
		testpoint("vq.push");
	for (unsigned i = 0; i < n; i++) {
		vq_unmap_elem(e[i]);
		if (!vq_elem_current(e[i]))
			continue;
		struct vring_used_elem *u = &vq->used->ring[idx++ & (vq->num - 1)];

		u->id = htole32(e[i]->head);
		u->len = htole32(written[i] < e[i]->in_len ? written[i] : e[i]->in_len);
	}
	if (vq && idx != vq->used_idx) {
		vq->used_idx = idx;
		/* Release: every element above is visible before the one index that publishes all. */
		__atomic_store_n(&vq->used->idx, htole16(vq->used_idx), __ATOMIC_RELEASE);
		testpoint("vq.push.published");
		/* Out of flight only once the guest sees them (struct vq_state). */
		for (unsigned i = 0; i < n; i++)
			if (vq_elem_current(e[i]))
				vq_head_mark(vq, e[i]->head, false);
		vq_rec_used(vq);
	}
	for (unsigned i = 0; i < n; i++)
		vq_elem_release(e[i]);
}

void vq_drop(struct vq_elem *e)
{
	vq_unmap_elem(e);
	if (vq_elem_current(e))
		vq_head_mark(e->vq, e->head, false);
	vq_elem_release(e);
}

bool vq_should_notify(struct virtqueue *vq)
{
	if (!vq->enabled)
		return false;
	/*
	 * Full barrier: our used->idx store must be visible before we read the driver's
	 * suppression state (flags or used_event); otherwise a driver re-enabling interrupts
	 * just now could see the old index while we see the old suppression, and sleep forever.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t old = vq->signalled_used, now = vq->used_idx;
	bool valid = vq->signalled_valid;

	vq->signalled_used = now;
	vq->signalled_valid = true;
	if (valid && old == now)
		return false;            /* nothing used since the last interrupt */
	if (!vq->event_idx)
		return !(vq_load16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return true;
	return vring_need_event(vq_load16(vq_used_event(vq)), now, old);
}

void vq_disable_notify(struct virtqueue *vq)
{
	if (!vq->enabled)
		return;
	/* With EVENT_IDX a stale avail_event already suppresses kicks until vq_pop() rearms. */
	if (!vq->event_idx)
		vq_store16(&vq->used->flags, VRING_USED_F_NO_NOTIFY);
}

bool vq_enable_notify(struct virtqueue *vq)
{
	if (!vq->enabled)
		return false;
	if (vq->event_idx)
		vq_store16(vq_avail_event(vq), vq->last_avail);
	else
		vq_store16(&vq->used->flags, 0);
	/* Full barrier: the re-enable is visible before we look for chains published meanwhile. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return vq_has_work(vq);
}

bool vq_more(struct virtqueue *vq)
{
	return vq_has_work(vq) || vq_enable_notify(vq);
}

/* Give an adopted head back unused: length 0 (a device that must not do it twice). */
static void vq_return_unused(struct virtqueue *vq, uint16_t head)
{
	vq_put_used(vq, head, 0);
	vq_head_mark(vq, head, false);
	vq_rec_used(vq);
}

/* The used elements the guest sees beyond the record's used_idx are done: out of flight. */
static int vq_adopt_used(struct virtqueue *vq)
{
	uint16_t seen = le16toh(__atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE));
	uint16_t ahead = (uint16_t)(seen - vq->used_idx);

	if (ahead > vq->num)
		return -EINVAL;   /* we never got that far: the guest wrote our used ring */
	for (uint16_t k = 0; k < ahead; k++) {
		uint32_t head = le32toh(vq->used->ring[(vq->used_idx + k) & (vq->num - 1)].id);

		if (head < vq->num && vq_head_inflight(vq, (uint16_t)head))
			vq_head_mark(vq, (uint16_t)head, false);
	}
	vq->used_idx = seen;
	vq_rec_used(vq);
	return 0;
}

/* A head in flight and still at avail[last_avail]: the pop stopped between its two writes. */
static void vq_adopt_popping(struct virtqueue *vq)
{
	if (vq_avail_idx(vq) == vq->last_avail)
		return;
	uint16_t head = vq_load16(&vq->avail->ring[vq->last_avail & (vq->num - 1)]);

	if (head < vq->num && vq_head_inflight(vq, head))
		vq_head_mark(vq, head, false);
}

/*
 * The heads in flight, into out[], in the order the driver made them available as far as the
 * avail ring still shows it: walking back from last_avail over the whole ring, a head in flight
 * is placed at its most recent slot; heads found in no slot (the driver reused theirs since)
 * come first, by index. The order matters to devices whose requests build on each other (the
 * messages of one i2c transfer, console output). The ring is the guest's: it only orders heads
 * already in flight, each once. Returns how many.
 */
static unsigned vq_adopt_order(struct virtqueue *vq, uint16_t *out)
{
	uint64_t seen[VQ_MAX_SIZE / 64] = { 0 };
	uint16_t back[VQ_MAX_SIZE];
	unsigned nback = 0, n = 0;

	for (unsigned k = 1; k <= vq->num && nback < vq->inflight; k++) {
		uint16_t head = vq_load16(&vq->avail->ring[(uint16_t)(vq->last_avail - k) &
							    (vq->num - 1)]);

		if (head >= vq->num || !vq_head_inflight(vq, head) ||
		    (seen[head / 64] >> (head % 64)) & 1)
			continue;
		seen[head / 64] |= UINT64_C(1) << (head % 64);
		back[nback++] = head;
	}
	for (unsigned h = 0; h < vq->num; h++)
		if (vq_head_inflight(vq, (uint16_t)h) && !((seen[h / 64] >> (h % 64)) & 1))
			out[n++] = (uint16_t)h;
	while (nback)
		out[n++] = back[--nback];
	return n;
}

int vq_adopt(struct virtqueue *vq, struct gmem *gm, uint16_t index, uint16_t max,
	     uint64_t features, bool replay)
{
	struct vq_state *r = vq->rec;
	unsigned n = 0;

	vq->gm = gm;
	vq->index = index;
	if (!r || !r->enabled)
		return 0;
	if (!gm || r->num > max || !vq_is_pow2(r->num) || (r->desc_gpa & 15) ||
	    (r->avail_gpa & 1) || (r->used_gpa & 3) ||
	    vq_map_rings(vq, r->num, r->desc_gpa, r->avail_gpa, r->used_gpa) < 0)
		return -EINVAL;
	vq->scratch = calloc(VQ_MAX_SIZE, sizeof(*vq->scratch));
	vq->replay = calloc(r->num, sizeof(*vq->replay));
	if (!vq->scratch || !vq->replay)
		return -ENOMEM;
	vq->num = r->num;
	vq->desc_gpa = r->desc_gpa;
	vq->avail_gpa = r->avail_gpa;
	vq->used_gpa = r->used_gpa;
	vq->event_idx = (features >> VQ_F_EVENT_IDX) & 1;
	vq->indirect = (features >> VQ_F_INDIRECT_DESC) & 1;
	vq->last_avail = r->last_avail;
	vq->used_idx = r->used_idx;
	vq->broken = r->broken;
	memcpy(vq->inflight_map, r->inflight_map, sizeof(vq->inflight_map));
	/* Bits beyond the ring are no heads: a record is checked like anything read back. */
	for (unsigned h = vq->num; h < VQ_MAX_SIZE; h++)
		vq->inflight_map[h / 64] &= ~(UINT64_C(1) << (h % 64));
	vq->inflight = 0;
	for (unsigned h = 0; h < vq->num; h++)
		vq->inflight += vq_head_inflight(vq, (uint16_t)h);
	/* An interrupt follows adoption anyway: the suppression state starts afresh. */
	vq->signalled_valid = false;
	vq->enabled = true;
	if (vq->broken)
		return 0;
	if (vq_adopt_used(vq) < 0) {
		vq->broken = true;
		r->broken = 1;
		return -EINVAL;
	}
	vq_adopt_popping(vq);
	n = vq_adopt_order(vq, vq->replay);
	if (replay)
		vq->nreplay = (uint16_t)n;
	else
		for (unsigned k = 0; k < n; k++)
			vq_return_unused(vq, vq->replay[k]);
	return (int)n;
}
