/* The privcmd eventfd seam on the real /dev/xen/privcmd (see ioreq/privcmd.h). */
#include "ioreq/privcmd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define PRIVCMD_PATH "/dev/xen/privcmd"

struct xen_privcmd {
	int fd;
};

static int privcmd_ioctl(struct xen_privcmd *p, unsigned long cmd, const void *arg)
{
	return ioctl(p->fd, cmd, arg) < 0 ? -errno : 0;
}

int xen_privcmd_open(uint32_t domid, struct xen_privcmd **out)
{
	struct xen_privcmd *p = malloc(sizeof(*p));
	uint16_t dom = (uint16_t)domid;
	int rc;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->fd = open(PRIVCMD_PATH, O_RDWR | O_CLOEXEC);
	if (p->fd < 0) {
		rc = -errno;
		free(p);
		return rc;
	}
	/* A restricted fd accepts only ioctls naming this domain, as the other handles do. */
	rc = privcmd_ioctl(p, XVD_IOCTL_PRIVCMD_RESTRICT, &dom);
	if (rc < 0) {
		xen_privcmd_close(p);
		return rc;
	}
	*out = p;
	return 0;
}

int xen_privcmd_ioeventfd(struct xen_privcmd *p, const struct xvd_privcmd_ioeventfd *a)
{
	return privcmd_ioctl(p, XVD_IOCTL_PRIVCMD_IOEVENTFD, a);
}

int xen_privcmd_irqfd(struct xen_privcmd *p, const struct xvd_privcmd_irqfd *a)
{
	return privcmd_ioctl(p, XVD_IOCTL_PRIVCMD_IRQFD, a);
}

void xen_privcmd_close(struct xen_privcmd *p)
{
	if (!p)
		return;
	close(p->fd);
	free(p);
}

void xen_privcmd_race(const volatile void *slot, unsigned point)
{
	(void)slot;
	(void)point;
}
