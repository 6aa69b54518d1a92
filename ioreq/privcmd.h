/*
 * The privcmd eventfd seam: Linux >= 6.7 (CONFIG_XEN_PRIVCMD_EVENTFD) lets dom0 userspace hand
 * QueueNotify writes to an ioeventfd (completed in the kernel, the vCPU never waits for us) and
 * raise interrupts by writing an irqfd (the kernel issues the DM op). ioreq/privcmd.c is the
 * real one on /dev/xen/privcmd; the sim daemon links tests/xensim/lib_privcmd.c instead.
 *
 * Debian's headers lack both ioctls, so their argument layouts are defined here, checked
 * against Linux 6.12 include/uapi/xen/privcmd.h by size.
 */
#ifndef XVD_PRIVCMD_H
#define XVD_PRIVCMD_H

#include <assert.h>
#include <stdint.h>
#include <sys/ioctl.h>

/* Argument of IOCTL_PRIVCMD_IRQFD: on each signal of fd, HYPERVISOR_dm_op(dom, dm_op). */
struct xvd_privcmd_irqfd {
	uint64_t dm_op;      /* user pointer to one struct xen_dm_op (copied at assign) */
	uint32_t size;       /* its size */
	uint32_t fd;         /* eventfd */
	uint32_t flags;      /* XVD_PRIVCMD_DEASSIGN */
	uint16_t dom;
	uint8_t pad[2];
};

/*
 * Argument of IOCTL_PRIVCMD_IOEVENTFD: a write of addr_len bytes to addr + 0x50 (QueueNotify)
 * whose low 16 bits of data equal vq is claimed by the kernel, which signals event_fd.
 */
struct xvd_privcmd_ioeventfd {
	uint64_t ioreq;      /* user VA of the ioreq page as mapped through privcmd */
	uint64_t ports;      /* user pointer to vcpus uint32_t: the local port of each vCPU */
	uint64_t addr;       /* the virtio-mmio window base */
	uint32_t addr_len;   /* access size (1, 2, 4 or 8) */
	uint32_t event_fd;
	uint32_t vcpus;      /* 1..4096 */
	uint32_t vq;
	uint32_t flags;      /* XVD_PRIVCMD_DEASSIGN */
	uint16_t dom;
	uint8_t pad[2];
};

static_assert(sizeof(struct xvd_privcmd_irqfd) == 24, "privcmd_irqfd layout");
static_assert(sizeof(struct xvd_privcmd_ioeventfd) == 48, "privcmd_ioeventfd layout");

#define XVD_PRIVCMD_DEASSIGN       1u
#define XVD_IOCTL_PRIVCMD_RESTRICT _IOC(_IOC_NONE, 'P', 6, sizeof(uint16_t))
#define XVD_IOCTL_PRIVCMD_IRQFD    _IOW('P', 8, struct xvd_privcmd_irqfd)
#define XVD_IOCTL_PRIVCMD_IOEVENTFD _IOW('P', 9, struct xvd_privcmd_ioeventfd)

struct xen_privcmd;

/* Open privcmd (close-on-exec) and restrict it to domid. 0 or a negative errno. */
int xen_privcmd_open(uint32_t domid, struct xen_privcmd **out);
/* The ioctls: 0 or a negative errno (-ENOTTY: a kernel without the eventfd support). */
int xen_privcmd_ioeventfd(struct xen_privcmd *p, const struct xvd_privcmd_ioeventfd *a);
int xen_privcmd_irqfd(struct xen_privcmd *p, const struct xvd_privcmd_irqfd *a);
void xen_privcmd_close(struct xen_privcmd *p);

/*
 * ioreq/slot.c reached `point` (enum slot_point) on a slot the kernel's ioeventfd handler
 * shares with us. Nothing on Linux (the kernel runs when it runs); xensim's model of the dom0
 * kernel may run steps of its handler here, which forces one interleaving of the two.
 */
void xen_privcmd_race(const volatile void *slot, unsigned point);

#endif
