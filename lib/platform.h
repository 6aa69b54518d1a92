/*
 * Where libxl puts virtio-mmio devices in an Arm guest (xen/include/public/arch-arm.h,
 * GUEST_VIRTIO_MMIO_*): the facts the configuration loader, xenstore discovery and the Xen side
 * all check against, kept in one place. Includes nothing of ours.
 */
#ifndef XVD_PLATFORM_H
#define XVD_PLATFORM_H

#include <stdint.h>

#define PLATFORM_MMIO_MIN    UINT64_C(0x02000000)   /* GUEST_VIRTIO_MMIO_BASE */
#define PLATFORM_MMIO_END    UINT64_C(0x02100000)   /* exclusive: base + GUEST_VIRTIO_MMIO_SIZE */
#define PLATFORM_MMIO_WINDOW 0x200u                 /* bytes per device window (libxl's spacing) */
#define PLATFORM_IRQ_MIN     32u                    /* SPIs */
#define PLATFORM_IRQ_MAX     987u

#endif
