/*
 * The test driver: the guest's side of a virtio-mmio device (virtio 1.2 §3.1.1, §4.2.3).
 * It never validates what the device under test must validate, so tests can hand it hostile
 * chains (e.g. readable after writable) and corrupt its rings directly.
 *
 * A struct vdrv must be zeroed before its first vdrv_init(); later calls reuse its rings.
 *
 * Indirect tables: vq->indirect_gpa holds 2*num entries. [0, num) is the table in use by a
 * head (0 if none), [num, 2*num) a table of VDRV_INDIRECT_MAX entries allocated once per head
 * and reused, so long runs do not exhaust the bump allocator.
 */
#include "tests/lib/vdriver.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/device.h"
#include "devices/virtio_mmio.h"

#define VDRV_INDIRECT_MAX 256u

/* Register offsets (virtio 1.2 §4.2.2); the device side has its own copy on purpose. */
enum {
	R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008, R_DEV_FEATURES = 0x010,
	R_DEV_FEATURES_SEL = 0x014, R_DRV_FEATURES = 0x020, R_DRV_FEATURES_SEL = 0x024,
	R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034, R_QUEUE_NUM = 0x038, R_QUEUE_READY = 0x044,
	R_QUEUE_NOTIFY = 0x050, R_INT_STATUS = 0x060, R_INT_ACK = 0x064, R_STATUS = 0x070,
	R_DESC_LO = 0x080, R_DESC_HI = 0x084, R_AVAIL_LO = 0x090, R_AVAIL_HI = 0x094,
	R_USED_LO = 0x0a0, R_USED_HI = 0x0a4, R_CONFIG_GEN = 0x0fc,
};

uint64_t vdrv_alloc(struct vdrv_mem *m, uint64_t len, uint64_t align, void **host)
{
	uint64_t a = align ? align : 1;
	uint64_t off = (m->gpa + m->next + a - 1) / a * a - m->gpa;

	if (len == 0 || off > m->size || len > m->size - off)
		return 0;
	m->next = off + len;
	memset(m->host + off, 0, len);
	if (host)
		*host = m->host + off;
	return m->gpa + off;
}

void *vdrv_host(struct vdrv_mem *m, uint64_t gpa)
{
	if (gpa < m->gpa || gpa - m->gpa >= m->size)
		return NULL;
	return m->host + (gpa - m->gpa);
}

static uint64_t vdrv_dma(struct vdrv *drv, uint64_t gpa, uint64_t len, bool device_writes)
{
	if (!drv->mem->dma_addr)
		return gpa;
	return drv->mem->dma_addr(drv->mem, gpa, len, device_writes);
}

uint32_t vdrv_read32(struct vdrv *drv, uint32_t off)
{
	return (uint32_t)drv->io->read(drv->io, off, 4);
}

void vdrv_write32(struct vdrv *drv, uint32_t off, uint32_t val)
{
	drv->io->write(drv->io, off, 4, val);
}

uint32_t vdrv_status(struct vdrv *drv)
{
	return vdrv_read32(drv, R_STATUS);
}

void vdrv_reset(struct vdrv *drv)
{
	vdrv_write32(drv, R_STATUS, 0);
	/* The device may finish the reset asynchronously (virtio 1.2 §4.2.3.1). */
	for (int i = 0; i < 1000 && vdrv_status(drv) != 0; i++) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	for (unsigned q = 0; q < drv->nqueues && q < VDRV_MAX_QUEUES; q++)
		drv->vq[q].ready = false;
}

static void vdrv_add_status(struct vdrv *drv, uint32_t bits)
{
	vdrv_write32(drv, R_STATUS, vdrv_status(drv) | bits);
}

static uint64_t vdrv_read_features(struct vdrv *drv)
{
	vdrv_write32(drv, R_DEV_FEATURES_SEL, 1);
	uint64_t hi = vdrv_read32(drv, R_DEV_FEATURES);

	vdrv_write32(drv, R_DEV_FEATURES_SEL, 0);
	return hi << 32 | vdrv_read32(drv, R_DEV_FEATURES);
}

static void vdrv_write_features(struct vdrv *drv, uint64_t f)
{
	vdrv_write32(drv, R_DRV_FEATURES_SEL, 1);
	vdrv_write32(drv, R_DRV_FEATURES, (uint32_t)(f >> 32));
	vdrv_write32(drv, R_DRV_FEATURES_SEL, 0);
	vdrv_write32(drv, R_DRV_FEATURES, (uint32_t)f);
}

static void vdrv_write_addr(struct vdrv *drv, uint32_t lo, uint64_t addr)
{
	vdrv_write32(drv, lo, (uint32_t)addr);
	vdrv_write32(drv, lo + 4, (uint32_t)(addr >> 32));
}

/* Allocate the rings of queue q (first time only) and link the free list. */
static int vdrv_alloc_ring(struct vdrv *drv, struct vdrv_vq *vq, uint16_t num)
{
	/* Reuse the rings of an earlier init only while they still belong to this allocator. */
	bool reuse = vq->num == num && vq->desc_gpa >= drv->mem->gpa &&
		     vq->desc_gpa - drv->mem->gpa < drv->mem->next &&
		     (void *)vq->desc == vdrv_host(drv->mem, vq->desc_gpa);

	if (!reuse) {
		void *d, *a, *u, *t, *ind;

		/*
		 * Bookkeeping lives in guest RAM too, so the driver needs no teardown call and
		 * leaks nothing on the host (the device never maps these ranges).
		 */
		vq->desc_gpa = vdrv_alloc(drv->mem, vring_desc_size(num), 16, &d);
		vq->avail_gpa = vdrv_alloc(drv->mem, vring_avail_size(num), 2, &a);
		vq->used_gpa = vdrv_alloc(drv->mem, vring_used_size(num), 4, &u);
		if (!vq->desc_gpa || !vq->avail_gpa || !vq->used_gpa ||
		    !vdrv_alloc(drv->mem, num * sizeof(void *), 8, &t) ||
		    !vdrv_alloc(drv->mem, 2u * num * sizeof(uint64_t), 8, &ind))
			return -ENOMEM;
		vq->desc = d;
		vq->avail = a;
		vq->used = u;
		vq->tokens = t;
		vq->indirect_gpa = ind;
		vq->num = num;
	}
	memset(vq->desc, 0, vring_desc_size(num));
	memset(vq->avail, 0, vring_avail_size(num));
	memset(vq->used, 0, vring_used_size(num));
	memset(vq->tokens, 0, num * sizeof(*vq->tokens));
	memset(vq->indirect_gpa, 0, num * sizeof(*vq->indirect_gpa));
	for (uint16_t i = 0; i < num; i++)
		vq->desc[i].next = (uint16_t)(i + 1);
	vq->free_head = 0;
	vq->num_free = num;
	vq->last_used = 0;
	vq->avail_idx = 0;
	return 0;
}

static int vdrv_setup_queue(struct vdrv *drv, unsigned q, uint16_t qsize)
{
	struct vdrv_vq *vq = &drv->vq[q];

	vdrv_write32(drv, R_QUEUE_SEL, q);
	uint32_t max = vdrv_read32(drv, R_QUEUE_NUM_MAX);

	if (max == 0 || vdrv_read32(drv, R_QUEUE_READY))
		return -ENOENT;
	uint16_t num = qsize < max ? qsize : (uint16_t)max;

	if (vdrv_alloc_ring(drv, vq, num) < 0)
		return -ENOMEM;
	vdrv_write32(drv, R_QUEUE_NUM, num);
	vdrv_write_addr(drv, R_DESC_LO, vdrv_dma(drv, vq->desc_gpa, vring_desc_size(num), false));
	vdrv_write_addr(drv, R_AVAIL_LO, vdrv_dma(drv, vq->avail_gpa, vring_avail_size(num),
						  false));
	vdrv_write_addr(drv, R_USED_LO, vdrv_dma(drv, vq->used_gpa, vring_used_size(num), true));
	vdrv_write32(drv, R_QUEUE_READY, 1);
	if (vdrv_read32(drv, R_QUEUE_READY) != 1)
		return -EINVAL;
	vq->ready = true;
	return 0;
}

int vdrv_init(struct vdrv *drv, struct vdrv_io *io, struct vdrv_mem *mem, uint64_t want,
	      unsigned nqueues, uint16_t qsize)
{
	int rc;

	if (drv->io != io || drv->mem != mem) {
		memset(drv, 0, sizeof(*drv));
		drv->io = io;
		drv->mem = mem;
	}
	if (nqueues > VDRV_MAX_QUEUES || qsize == 0)
		return -EINVAL;
	vdrv_reset(drv);
	if (vdrv_read32(drv, R_MAGIC) != 0x74726976u || vdrv_read32(drv, R_VERSION) != 2)
		return -ENODEV;
	drv->device_id = vdrv_read32(drv, R_DEVICE_ID);
	vdrv_add_status(drv, VIRTIO_STATUS_ACKNOWLEDGE);
	vdrv_add_status(drv, VIRTIO_STATUS_DRIVER);
	drv->device_features = vdrv_read_features(drv);
	drv->features = want & drv->device_features;
	vdrv_write_features(drv, drv->features);
	vdrv_add_status(drv, VIRTIO_STATUS_FEATURES_OK);
	if (!(vdrv_status(drv) & VIRTIO_STATUS_FEATURES_OK))
		return -ENOTSUP;
	drv->nqueues = nqueues;
	for (unsigned q = 0; q < nqueues; q++) {
		rc = vdrv_setup_queue(drv, q, qsize);
		if (rc < 0)
			return rc;
	}
	vdrv_add_status(drv, VIRTIO_STATUS_DRIVER_OK);
	if (!(vdrv_status(drv) & VIRTIO_STATUS_DRIVER_OK))
		return -EIO;
	return 0;
}

void vdrv_config_read(struct vdrv *drv, uint32_t off, void *buf, uint32_t len)
{
	uint8_t *out = buf;
	uint32_t gen;

	do {
		gen = vdrv_read32(drv, R_CONFIG_GEN);
		for (uint32_t i = 0; i < len;) {
			uint32_t at = off + i;
			unsigned sz = (at % 4 == 0 && len - i >= 4) ? 4 :
				      (at % 2 == 0 && len - i >= 2) ? 2 : 1;
			uint64_t v = drv->io->read(drv->io, VIRTIO_MMIO_CONFIG + at, sz);

			memcpy(out + i, &v, sz);   /* little-endian host */
			i += sz;
		}
	} while (gen != vdrv_read32(drv, R_CONFIG_GEN));
}

static void vdrv_fill_desc(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags)
{
	d->addr = addr;
	d->len = len;
	d->flags = flags;
}

static uint64_t vdrv_indirect_table(struct vdrv *drv, struct vdrv_vq *vq, uint16_t head)
{
	uint64_t *cached = &vq->indirect_gpa[vq->num + head];

	if (!*cached)
		*cached = vdrv_alloc(drv->mem, VDRV_INDIRECT_MAX * sizeof(struct vring_desc), 16,
				     NULL);
	return *cached;
}

/* One ring descriptor pointing at a table holding the whole chain. */
static int vdrv_submit_indirect(struct vdrv *drv, struct vdrv_vq *vq, uint16_t head,
				const struct vdrv_buf *bufs, unsigned n)
{
	uint64_t tgpa = vdrv_indirect_table(drv, vq, head);
	struct vring_desc *t = tgpa ? vdrv_host(drv->mem, tgpa) : NULL;

	if (!t || n > VDRV_INDIRECT_MAX)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		uint16_t fl = (uint16_t)((bufs[i].write ? VRING_DESC_F_WRITE : 0) |
					 (i + 1 < n ? VRING_DESC_F_NEXT : 0));

		vdrv_fill_desc(&t[i], vdrv_dma(drv, bufs[i].gpa, bufs[i].len, bufs[i].write),
			       bufs[i].len, fl);
		t[i].next = (uint16_t)(i + 1);
	}
	vq->indirect_gpa[head] = tgpa;
	vdrv_fill_desc(&vq->desc[head], vdrv_dma(drv, tgpa, n * 16ull, false), n * 16u,
		       VRING_DESC_F_INDIRECT);
	vq->free_head = vq->desc[head].next;
	vq->num_free--;
	return 0;
}

static void vdrv_submit_direct(struct vdrv *drv, struct vdrv_vq *vq, const struct vdrv_buf *bufs,
			       unsigned n)
{
	uint16_t i = vq->free_head;

	for (unsigned k = 0; k < n; k++) {
		uint16_t fl = (uint16_t)((bufs[k].write ? VRING_DESC_F_WRITE : 0) |
					 (k + 1 < n ? VRING_DESC_F_NEXT : 0));

		vdrv_fill_desc(&vq->desc[i], vdrv_dma(drv, bufs[k].gpa, bufs[k].len,
						      bufs[k].write), bufs[k].len, fl);
		if (k + 1 < n)
			i = vq->desc[i].next;
	}
	/* desc[i] is the last of the chain; its next field still links the free list. */
	vq->free_head = vq->desc[i].next;
	vq->num_free = (uint16_t)(vq->num_free - n);
}

static void vdrv_publish(struct vdrv_vq *vq, uint16_t head)
{
	vq->avail->ring[vq->avail_idx & (vq->num - 1)] = head;
	vq->avail_idx++;
	/* Release: the descriptors and ring entry are visible before the index that publishes them. */
	__atomic_store_n(&vq->avail->idx, vq->avail_idx, __ATOMIC_RELEASE);
}

int vdrv_submit(struct vdrv *drv, unsigned q, const struct vdrv_buf *bufs, unsigned n,
		bool indirect, void *token)
{
	if (q >= drv->nqueues || !drv->vq[q].ready || n == 0)
		return -1;
	struct vdrv_vq *vq = &drv->vq[q];
	uint16_t head = vq->free_head;

	if (indirect) {
		if (vq->num_free < 1 || vdrv_submit_indirect(drv, vq, head, bufs, n) < 0)
			return -1;
	} else {
		if (n > vq->num_free)
			return -1;
		vdrv_submit_direct(drv, vq, bufs, n);
	}
	vq->tokens[head] = token;
	vdrv_publish(vq, head);
	return head;
}

void vdrv_kick(struct vdrv *drv, unsigned q)
{
	/* Full barrier: avail->idx is visible before the device sees the kick. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vdrv_write32(drv, R_QUEUE_NOTIFY, q);
}

bool vdrv_kick_if_asked(struct vdrv *drv, unsigned q, uint16_t old)
{
	struct vdrv_vq *vq = &drv->vq[q];
	bool ask;

	/* Full barrier: avail->idx is visible before we read whether the device wants a kick. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (drv->features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX))
		ask = vring_need_event(le16toh(__atomic_load_n(&vring_avail_event(vq->used, vq->num),
							       __ATOMIC_RELAXED)),
				       vq->avail_idx, old);
	else
		ask = !(le16toh(__atomic_load_n(&vq->used->flags, __ATOMIC_RELAXED)) &
			VRING_USED_F_NO_NOTIFY);
	if (ask)
		vdrv_write32(drv, R_QUEUE_NOTIFY, q);
	return ask;
}

/* Return the chain at head to the free list. */
static void vdrv_free_chain(struct vdrv_vq *vq, uint16_t head)
{
	uint16_t i = head, n = 1;

	vq->indirect_gpa[head] = 0;
	while ((vq->desc[i].flags & VRING_DESC_F_NEXT) && n < vq->num) {
		i = vq->desc[i].next % vq->num;
		n++;
	}
	vq->desc[i].next = vq->free_head;
	vq->free_head = head;
	vq->num_free = (uint16_t)(vq->num_free + n);
}

int vdrv_get_used(struct vdrv *drv, unsigned q, uint32_t *len, void **token)
{
	if (q >= drv->nqueues || !drv->vq[q].ready)
		return 0;
	struct vdrv_vq *vq = &drv->vq[q];

	/* Acquire: pairs with the device's release store of used->idx. */
	uint16_t idx = __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE);

	if (idx == vq->last_used)
		return 0;
	struct vring_used_elem u = vq->used->ring[vq->last_used & (vq->num - 1)];

	vq->last_used++;
	if (u.id >= vq->num)
		return -1;       /* a broken device; the caller's test fails on it */
	if (len)
		*len = u.len;
	if (token)
		*token = vq->tokens[u.id];
	vq->tokens[u.id] = NULL;
	vdrv_free_chain(vq, (uint16_t)u.id);
	return 1;
}

static void vdrv_ack_irq(struct vdrv *drv)
{
	uint32_t isr = vdrv_read32(drv, R_INT_STATUS);

	if (isr)
		vdrv_write32(drv, R_INT_ACK, isr);
}

static int64_t vdrv_elapsed_ms(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

uint16_t vdrv_config16(struct vdrv *drv, uint32_t off)
{
	uint16_t v;

	vdrv_config_read(drv, off, &v, 2);
	return le16toh(v);
}

uint32_t vdrv_wait_isr(struct vdrv *drv, int ms)
{
	uint32_t isr = 0;

	if (drv->io->wait_irq(drv->io, ms) > 0) {
		isr = vdrv_read32(drv, R_INT_STATUS);
		vdrv_write32(drv, R_INT_ACK, isr);
	}
	return isr;
}

uint16_t vdrv_wait_config16(struct vdrv *drv, uint32_t off, uint16_t want, int timeout_ms,
			    uint32_t *isr_seen)
{
	struct timespec t0;
	uint16_t v;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((v = vdrv_config16(drv, off)) != want && vdrv_elapsed_ms(&t0) < timeout_ms) {
		uint32_t isr = vdrv_wait_isr(drv, 10);

		if (isr_seen)
			*isr_seen |= isr;
	}
	return v;
}

int64_t vdrv_transfer(struct vdrv *drv, unsigned q, const struct vdrv_buf *bufs, unsigned n,
		      bool indirect, int timeout_ms)
{
	static char mark;
	struct timespec t0;
	uint32_t len;
	void *tok;

	if (vdrv_submit(drv, q, bufs, n, indirect, &mark) < 0)
		return -1;
	vdrv_kick(drv, q);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int r = vdrv_get_used(drv, q, &len, &tok);

		if (r < 0)
			return -1;
		if (r > 0 && tok == &mark)
			return len;
		if (r > 0)
			continue;        /* someone else's chain */
		if (vdrv_elapsed_ms(&t0) >= timeout_ms)
			return -1;
		if (drv->io->wait_irq(drv->io, 10) > 0)
			vdrv_ack_irq(drv);
	}
}

int vdrv_wait_used(struct vdrv *drv, unsigned q, unsigned n, int timeout_ms)
{
	struct vdrv_vq *vq = &drv->vq[q];
	struct timespec t0;
	unsigned got = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got < n) {
		int r = vdrv_get_used(drv, q, NULL, NULL);

		if (r < 0)
			return -1;
		if (r > 0) {
			got++;
			continue;
		}
		if (vdrv_elapsed_ms(&t0) >= timeout_ms)
			break;
		/* Interrupts on, then one more look: a chain used meanwhile is not slept over. */
		vdrv_enable_irq(drv, q);
		if (__atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE) == htole16(vq->last_used))
			drv->io->wait_irq(drv->io, 10);
	}
	return (int)got;
}

void vdrv_enable_irq(struct vdrv *drv, unsigned q)
{
	if (q >= drv->nqueues || !drv->vq[q].ready)
		return;
	struct vdrv_vq *vq = &drv->vq[q];

	if (drv->features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX))
		__atomic_store_n(&vring_used_event(vq->avail, vq->num), vq->last_used,
				 __ATOMIC_RELAXED);
	else
		__atomic_store_n(&vq->avail->flags, 0, __ATOMIC_RELAXED);
	/* Full barrier: the re-enable is visible before the caller looks at used->idx again. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}
