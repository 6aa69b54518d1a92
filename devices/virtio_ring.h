/* Split virtqueue memory layout (virtio 1.2 §2.7). All fields little-endian in guest memory. */
#ifndef XVD_VIRTIO_RING_H
#define XVD_VIRTIO_RING_H

#include <stdint.h>

#define VRING_DESC_F_NEXT      1u
#define VRING_DESC_F_WRITE     2u
#define VRING_DESC_F_INDIRECT  4u

#define VRING_AVAIL_F_NO_INTERRUPT 1u
#define VRING_USED_F_NO_NOTIFY     1u

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];      /* num entries, then uint16_t used_event */
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[];  /* num entries, then uint16_t avail_event */
};

/* Sizes in bytes of each part for a queue of num entries, event fields included. */
static inline uint64_t vring_desc_size(uint32_t num) { return 16ull * num; }
static inline uint64_t vring_avail_size(uint32_t num) { return 6ull + 2ull * num; }
static inline uint64_t vring_used_size(uint32_t num) { return 6ull + 8ull * num; }

/* The avail ring's used_event and the used ring's avail_event fields. */
#define vring_used_event(avail, num)  ((avail)->ring[(num)])
#define vring_avail_event(used, num)  (*(volatile uint16_t *)&(used)->ring[(num)])

/* EVENT_IDX: notify when event_idx lies in [old, new) in wrapping u16 arithmetic. */
static inline int vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

#endif
