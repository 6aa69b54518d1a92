/*
 * The privcmd eventfd seam (ioreq/privcmd.h), simulated: the ioctls go to the hub's model of
 * the dom0 kernel (kernel.c) with the eventfd passed by SCM_RIGHTS. What the real ioctl finds
 * by itself is looked up here: the ioreq page behind the user address (the kernel's find_vma),
 * and the restriction of this handle.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ioreq/privcmd.h"
#include "tests/xensim/client.h"

struct xen_privcmd {
	int conn;
	int64_t restrict_domid;   /* -1: unrestricted */
};

int xen_privcmd_open(uint32_t domid, struct xen_privcmd **out)
{
	struct xen_privcmd *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->conn = xsim_connect();   /* ENOENT without a hub, like a missing device node */
	if (p->conn < 0) {
		int e = errno;

		free(p);
		return -e;
	}
	/* IOCTL_PRIVCMD_RESTRICT does not ask Xen whether the domain exists. */
	p->restrict_domid = domid;
	*out = p;
	return 0;
}

/* Send one request to the hub; 0 or -errno. */
static int privcmd_call(struct xen_privcmd *p, uint32_t op, uint16_t dom,
			const struct xsim_kfd_req *k, int fd)
{
	struct xsim_msg *m;
	int rc;

	if (p->restrict_domid >= 0 && p->restrict_domid != dom)
		return -EPERM;
	m = xsim_msg_new(op, dom);
	if (!m)
		return -ENOMEM;
	memcpy(m->data, k, sizeof(*k));
	m->len = sizeof(*k);
	rc = xsim_rpc(p->conn, m, (k->flags & XVD_PRIVCMD_DEASSIGN) ? -1 : fd, NULL, 0);
	free(m);
	return rc;
}

int xen_privcmd_ioeventfd(struct xen_privcmd *p, const struct xvd_privcmd_ioeventfd *a)
{
	struct xsim_kfd_req k = {
		.pid = (uint32_t)getpid(), .fd = a->event_fd, .flags = a->flags,
		.server = UINT32_MAX, .addr_len = a->addr_len, .vcpus = a->vcpus, .vq = a->vq,
		.addr = a->addr,
	};
	uint32_t domid;

	if (!xsim_resource_find((const void *)(uintptr_t)a->ioreq, &domid, &k.server) ||
	    domid != a->dom)
		k.server = UINT32_MAX;   /* the hub answers EFAULT (no such mapping) */
	return privcmd_call(p, XSIM_OP_IOEVENTFD, a->dom, &k, (int)a->event_fd);
}

int xen_privcmd_irqfd(struct xen_privcmd *p, const struct xvd_privcmd_irqfd *a)
{
	struct xsim_kfd_req k = {
		.pid = (uint32_t)getpid(), .fd = a->fd, .flags = a->flags, .server = UINT32_MAX,
		.dm_op_size = a->size,
	};

	if (!(a->flags & XVD_PRIVCMD_DEASSIGN)) {
		if (a->size > sizeof(k.dm_op))
			return -EINVAL;   /* more than the model keeps; the kernel would take it */
		memcpy(k.dm_op, (const void *)(uintptr_t)a->dm_op, a->size);
	}
	return privcmd_call(p, XSIM_OP_IRQFD, a->dom, &k, (int)a->fd);
}

void xen_privcmd_close(struct xen_privcmd *p)
{
	if (!p)
		return;
	close(p->conn);
	free(p);
}
