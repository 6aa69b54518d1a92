/*
 * virtio-gpio requests as a guest driver builds them, for the tests that play one: an 8-byte
 * request (type, line, value, little-endian) and a 2-byte response the device fills.
 */
#ifndef XVD_TEST_GPIO_MSG_H
#define XVD_TEST_GPIO_MSG_H

#include <stdint.h>

#include "tests/lib/vdriver.h"

#define GPIO_MSG_UNWRITTEN 0xee   /* what the driver leaves in the response: "not written" */

static inline void gpio_msg_put(uint8_t *b, uint16_t type, uint16_t line, uint32_t value)
{
	b[0] = (uint8_t)type;
	b[1] = (uint8_t)(type >> 8);
	b[2] = (uint8_t)line;
	b[3] = (uint8_t)(line >> 8);
	for (unsigned k = 0; k < 4; k++)
		b[4 + k] = (uint8_t)(value >> (8 * k));
}

/*
 * Allocate a request and its response from m, queue them on queue 0 with token, kick. Returns
 * the response's host address (status, value), or NULL when m or the ring is full.
 */
static inline uint8_t *gpio_msg_send(struct vdrv *drv, struct vdrv_mem *m, uint16_t type,
				     uint16_t line, uint32_t value, void *token)
{
	uint8_t *q, *r;
	struct vdrv_buf b[2] = { { vdrv_alloc(m, 8, 8, (void **)&q), 8, false },
				 { vdrv_alloc(m, 2, 8, (void **)&r), 2, true } };

	if (!b[0].gpa || !b[1].gpa)
		return NULL;
	gpio_msg_put(q, type, line, value);
	r[0] = r[1] = GPIO_MSG_UNWRITTEN;
	if (vdrv_submit(drv, 0, b, 2, false, token) < 0)
		return NULL;
	vdrv_kick(drv, 0);
	return r;
}

#endif
