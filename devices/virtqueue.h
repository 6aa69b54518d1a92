/*
 * The split virtqueue (virtio 1.2 §2.7), device side. Knows nothing of Xen or of the
 * transport: it sees guest memory only through ioreq/gmem.h.
 *
 * Every index and descriptor the guest writes is hostile. vq_pop() returns a chain only once it
 * has been walked and validated in full (DESIGN.md §6); a bad chain marks the queue broken and
 * the transport turns that into NEEDS_RESET.
 */
#ifndef XVD_VIRTQUEUE_H
#define XVD_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ioreq/gmem.h"

#define VQ_MAX_SIZE 1024u   /* largest QueueNumMax any device offers; also the iovec bound */
#define VQ_BUDGET   256u    /* chains a device handles per wakeup before yielding the loop */
#define VQ_ELEM_IOV 8u      /* elements of at most this many buffers are reused (vq->spare) */

/* One validated descriptor chain, owned by the device from vq_pop() to vq_push()/vq_drop(). */
struct vq_elem {
	struct virtqueue *vq;
	uint32_t gen;        /* queue generation at pop; a push after reset is dropped */
	uint16_t head;       /* descriptor index returned in the used ring */
	uint16_t n_out;      /* iov[0 .. n_out): device-readable buffers, in chain order */
	uint16_t n_in;       /* iov[n_out .. n_out+n_in): device-writable buffers */
	bool spare_ok;       /* iov holds VQ_ELEM_IOV entries: it may go back to vq->spare */
	uint32_t out_len;    /* total bytes of the readable part */
	uint32_t in_len;     /* total bytes of the writable part */
	void *dev_priv;      /* free for the device */
	struct vq_elem *next_spare;  /* in vq->spare, while nobody holds it */
	struct iovec iov[];
};

struct vring_desc;
struct vring_avail;
struct vring_used;

/*
 * What a new instance needs of a queue (lib/persist.h): kept up to date as the queue changes,
 * in memory that outlives the process. The order of the writes makes a crash at any
 * instruction recoverable by vq_adopt():
 *   pop:   the head's in-flight bit, then last_avail. A crash between the two leaves a head
 *          both in flight and still at avail[last_avail]: adoption clears its bit (it is
 *          popped again).
 *   push:  the used elements, then used->idx (the guest sees them), then the heads' bits and
 *          used_idx. A crash between the two leaves used->idx ahead of used_idx: adoption
 *          reads the elements in between back from the used ring and clears their bits.
 *   reset: enabled first, then the rest.
 * Every other head whose bit is set was taken and not returned: adoption gives it back to the
 * device (vq_pop() returns it again) or returns it unused, as the device chooses.
 */
struct vq_state {
	uint16_t num;
	uint8_t enabled;
	uint8_t broken;
	uint16_t last_avail;
	uint16_t used_idx;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint64_t inflight_map[VQ_MAX_SIZE / 64];
};

struct virtqueue {
	struct gmem *gm;
	uint16_t index;
	uint16_t num;          /* negotiated size, a power of two <= VQ_MAX_SIZE */
	bool enabled;          /* configured and validated (QueueReady = 1 accepted) */
	bool broken;           /* a bad chain or ring was seen; nothing more is popped */
	bool event_idx;        /* VIRTIO_F_RING_EVENT_IDX negotiated */
	bool indirect;         /* VIRTIO_F_RING_INDIRECT_DESC negotiated */
	uint32_t gen;          /* bumped on every reset */

	uint64_t desc_gpa, avail_gpa, used_gpa;
	struct vring_desc *desc;       /* mapped read-only for the whole queue lifetime */
	struct vring_avail *avail;
	struct vring_used *used;
	size_t desc_len, avail_len, used_len;

	uint16_t last_avail;   /* next avail ring slot we consume */
	uint16_t used_idx;     /* our private copy of used->idx */
	uint16_t signalled_used;  /* used_idx when we last notified (EVENT_IDX) */
	bool signalled_valid;
	uint32_t inflight;     /* popped, not yet pushed or dropped */
	/*
	 * The heads behind `inflight`, one bit per descriptor index (bit i of word i / 64). A
	 * correct driver never publishes a head the device still holds, so popping one twice is a
	 * broken ring: this is what bounds the chains a queue holds to its size. Plain memory of
	 * num bits, so a crash-recovery record can store it as it is.
	 */
	uint64_t inflight_map[VQ_MAX_SIZE / 64];

	struct iovec *scratch; /* VQ_MAX_SIZE entries: the chain walk's work area */
	/*
	 * Elements returned by the device, kept for the next pops instead of a malloc()/free()
	 * per chain: at most num of them (as many as the queue can hold in flight), emptied at
	 * every reset. Only elements of the current generation come back here.
	 */
	struct vq_elem *spare;
	uint16_t nspare;
	uint32_t stat_bad_chains;

	struct vq_state *rec;  /* the persistent record written through (NULL: none) */
	uint16_t *replay;      /* adopted heads vq_pop() returns again before new ones */
	uint16_t nreplay, replayed;
};

/*
 * Map and check the rings: alignment (desc 16, avail 2, used 4), each whole range including the
 * event fields mapped, num a power of two in [1, max]. On success the queue is enabled and its
 * indexes start at 0. Returns 0 or -EINVAL (queue left disabled, nothing mapped).
 */
int vq_configure(struct virtqueue *vq, struct gmem *gm, uint16_t index, uint16_t num,
		 uint16_t max, uint64_t desc, uint64_t avail, uint64_t used, uint64_t features);

/* Disable: unmap the rings, bump gen. Elements still held by the device stay valid memory. */
void vq_reset(struct virtqueue *vq);

/*
 * A new instance takes over the queue vq->rec describes: map its rings again, reconcile the
 * record with the used ring (see struct vq_state), and leave every head still in flight to be
 * popped again (replay) or, with replay false, returned to the guest unused (length 0).
 * Returns how many heads were in flight, or -EINVAL (rings no longer mapped, or a record the
 * guest's used ring contradicts: the queue is then broken).
 */
int vq_adopt(struct virtqueue *vq, struct gmem *gm, uint16_t index, uint16_t max,
	     uint64_t features, bool replay);

/*
 * Next available chain, or NULL. *err is 0 when the ring is simply empty (or the queue disabled),
 * negative when the guest broke the ring (a bad chain, or a head the device still holds): then
 * vq->broken is set and the caller must report NEEDS_RESET (vdev_vq_error() does). So at most
 * num elements of a queue exist at any time.
 */
struct vq_elem *vq_pop(struct virtqueue *vq, int *err);

/* True when head was popped and is not yet pushed or dropped. */
static inline bool vq_head_inflight(const struct virtqueue *vq, uint16_t head)
{
	return head < VQ_MAX_SIZE && (vq->inflight_map[head / 64] >> (head % 64)) & 1;
}

/* True when the avail ring holds chains we have not popped (read-only peek). */
bool vq_has_work(struct virtqueue *vq);

/*
 * Return a chain to the guest with `written` bytes written into its writable part (clamped to
 * in_len). Unmaps every buffer before the used ring update, then frees the element. After a
 * reset (generation changed) the element is only unmapped and freed.
 */
void vq_push(struct vq_elem *e, uint32_t written);

/*
 * vq_push() for n chains of one queue at once: every used element is written before the single
 * index update that publishes them, so the driver never sees part of a group (virtio-net's
 * mergeable receive buffers, where the first buffer announces how many follow).
 */
void vq_push_many(struct vq_elem *const *e, const uint32_t *written, unsigned n);

/* Give up an element without returning it to the guest (device reset, teardown). */
void vq_drop(struct vq_elem *e);

/*
 * After one or more vq_push(): should the guest be interrupted? Honours EVENT_IDX (used_event,
 * wrapping u16 arithmetic) or VRING_AVAIL_F_NO_INTERRUPT. Updates the signalled state, so call
 * it once per batch and raise the interrupt when it returns true.
 */
bool vq_should_notify(struct virtqueue *vq);

/*
 * Notification suppression towards the driver while the device polls: disable asks the driver
 * not to kick (flags or avail_event); enable re-arms and returns true when chains arrived in the
 * meantime (the caller must then process them, closing the race).
 */
void vq_disable_notify(struct virtqueue *vq);
bool vq_enable_notify(struct virtqueue *vq);

/*
 * A device stopped taking chains at its budget: true when chains wait (serve them on another
 * turn). Otherwise kicks are re-armed before returning false: a loop that ends at the budget
 * without popping the empty ring would leave avail_event (or NO_NOTIFY) as it was, and the driver
 * would add its next chains without a kick and wait for an answer forever.
 */
bool vq_more(struct virtqueue *vq);

#endif
