/*
 * The dom0 kernel's privcmd eventfd support (Linux >= 6.7, CONFIG_XEN_PRIVCMD_EVENTFD), modelled
 * in the hub's process, never the daemon's: a vCPU's kick is completed without waiting for the
 * daemon to be scheduled, as in the real kernel.
 *
 * ioeventfd: when the guest side posts a request, the "interrupt handler" runs in the guest's
 * thread right after the event is sent (the daemon's port gets that event too): a READY,
 * COPY, WRITE request to a registered window's QueueNotify, of the registered size, whose
 * data's low 16 bits equal the registered queue, is claimed (INPROCESS), the eventfd is
 * signalled and the request answered (IORESP_READY). Anything else is left alone.
 * irqfd: the kernel issues the DM op inside the writer's write() (the eventfd's wakeup runs
 * irqfd_inject), so the vCPU is woken by that write alone. Here the guest side is the one
 * woken: a vCPU waiting for an SPI polls the line's irqfds, and whoever looks at the line
 * (xsim_irq_wait, xsim_irq_edges, xsim_irq_level) first reads every signalled counter and
 * applies its DM op (XEN_DMOP_set_irq_level is the only one modelled). No extra thread stands
 * between the daemon's write and the guest, as none does in Linux.
 *
 * Registrations belong to the kernel, not to the privcmd file: they outlive the daemon's
 * connection, as they do in Linux, so a daemon must deassign what it assigned.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xendevicemodel.h>
#include <xen/hvm/dm_op.h>

#include "tests/xensim/guest.h"
#include "tests/xensim/hub.h"

#define KERNEL_NOTIFY_OFF 0x50u      /* VIRTIO_MMIO_QUEUE_NOTIFY */
#define KERNEL_VQ_MASK    0xffffu
#define KERNEL_MAX_VCPUS  4096u

struct xsim_kfd {
	bool irq;                 /* irqfd; else ioeventfd */
	uint32_t pid, fdno;       /* identity of the eventfd (see struct xsim_kfd_req) */
	int efd;                  /* the hub's copy of the eventfd */
	uint32_t domid;
	struct xsim_server *s;    /* ioeventfd: the server whose slots it watches */
	uint64_t addr;
	uint32_t len, vq;
	struct xen_dm_op op;      /* irqfd */
};

struct xsim_kernel {
	struct xsim_kernel_opts opts;
	struct xsim_kfd *v;
	unsigned n, cap;
	uint64_t claims;
	/* Deassigned eventfds, closed with the hub: a guest may still be polling the number. */
	int *dead_fds;
	unsigned ndead;
};

/* ---- the ioeventfd handler ---- */

static struct xsim_kfd *kernel_match(struct xsim_kernel *k, struct xsim_dom *d,
				     const volatile struct ioreq *slot)
{
	for (unsigned i = 0; i < k->n; i++) {
		struct xsim_kfd *f = &k->v[i];
		const struct ioreq *first = f->irq ? NULL : f->s->slots;

		if (f->irq || f->domid != d->domid || slot < first || slot >= first + f->s->nchans)
			continue;
		if (slot->addr == f->addr + KERNEL_NOTIFY_OFF && slot->size == f->len &&
		    (slot->data & KERNEL_VQ_MASK) == f->vq)
			return f;
	}
	return NULL;
}

static bool kernel_watches(struct xsim_kernel *k, struct xsim_dom *d)
{
	for (unsigned i = 0; i < k->n; i++)
		if (!k->v[i].irq && k->v[i].domid == d->domid)
			return true;
	return false;
}

void hub_kernel_ioreq(struct xsim_dom *d, struct ioreq *slot)
{
	struct xsim_hub *h = d->hub;
	struct xsim_kernel *k = h->kernel;
	volatile struct ioreq *r = slot;
	struct xsim_kfd *f;
	uint64_t one = 1;
	unsigned delay;

	pthread_mutex_lock(&h->lock);
	delay = k->opts.race_delay_ms;
	if (delay && kernel_watches(k, d)) {
		/* The race: the daemon's handler sees the READY request before ours runs. */
		pthread_mutex_unlock(&h->lock);
		usleep(delay * 1000u);
		pthread_mutex_lock(&h->lock);
	}
	if (r->state != STATE_IOREQ_READY)
		goto out;
	/* Xen published the request before READY. */
	atomic_thread_fence(memory_order_acquire);
	if (r->type != IOREQ_TYPE_COPY || r->dir != IOREQ_WRITE || !(f = kernel_match(k, d, r)))
		goto out;
	r->state = STATE_IOREQ_INPROCESS;
	if (write(f->efd, &one, sizeof(one)) != sizeof(one))
		goto out;   /* a counter at its maximum: the kernel would block; never here */
	k->claims++;
	/* The response only after the eventfd was signalled. */
	atomic_thread_fence(memory_order_release);
	r->state = STATE_IORESP_READY;
out:
	pthread_mutex_unlock(&h->lock);
}

/* ---- irqfds: run when the guest side looks at or waits for a line ---- */

#define KERNEL_POLL_MAX   16
#define KERNEL_POLL_MS    5     /* DM-op injections (no fd to poll) are seen this late */

static bool kernel_irq_of(const struct xsim_kfd *f, const struct xsim_dom *d, unsigned spi)
{
	return f->irq && f->domid == d->domid && f->op.op == XEN_DMOP_set_irq_level &&
	       f->op.u.set_irq_level.irq == spi;
}

void hub_kernel_irq_sync(struct xsim_dom *d, unsigned spi)
{
	struct xsim_hub *h = d->hub;
	struct xsim_kernel *k = h->kernel;
	uint64_t cnt;

	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < k->n; i++) {
		const struct xsim_kfd *f = &k->v[i];

		/* The counter read is the kernel's eventfd_ctx_do_read(); then the DM op. */
		if (!kernel_irq_of(f, d, spi) || read(f->efd, &cnt, sizeof(cnt)) != sizeof(cnt))
			continue;
		/* Xen refuses DM ops for a dead domain; the kernel logs it once. */
		if (d->alive && f->op.u.set_irq_level.level <= 1)
			xsim_irq_inject(d->ctl, spi, f->op.u.set_irq_level.level);
	}
	pthread_mutex_unlock(&h->lock);
}

bool hub_kernel_irq_poll(struct xsim_dom *d, unsigned spi, int64_t timeout_ms)
{
	struct xsim_hub *h = d->hub;
	struct xsim_kernel *k = h->kernel;
	struct pollfd p[KERNEL_POLL_MAX];
	nfds_t n = 0;

	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < k->n && n < KERNEL_POLL_MAX; i++)
		if (kernel_irq_of(&k->v[i], d, spi))
			p[n++] = (struct pollfd){ .fd = k->v[i].efd, .events = POLLIN };
	pthread_mutex_unlock(&h->lock);
	if (n == 0)
		return false;
	poll(p, n, (int)(timeout_ms < KERNEL_POLL_MS ? timeout_ms : KERNEL_POLL_MS));
	return true;
}

/* ---- the ioctls ---- */

static struct xsim_kfd *kernel_find(struct xsim_kernel *k, bool irq, const struct xsim_kfd_req *q)
{
	for (unsigned i = 0; i < k->n; i++)
		if (k->v[i].irq == irq && k->v[i].pid == q->pid && k->v[i].fdno == q->fd)
			return &k->v[i];
	return NULL;
}

static int kernel_deassign(struct xsim_kernel *k, bool irq, const struct xsim_kfd_req *q)
{
	struct xsim_kfd *f = kernel_find(k, irq, q);

	int *v;

	if (!f)
		return irq ? -ENOENT : -ENODEV;
	v = realloc(k->dead_fds, (k->ndead + 1) * sizeof(*v));
	if (v) {
		k->dead_fds = v;
		k->dead_fds[k->ndead++] = f->efd;
	} else {
		close(f->efd);
	}
	*f = k->v[--k->n];
	return 0;
}

/* The kernel's checks of IOCTL_PRIVCMD_IOEVENTFD, in its order. */
static int kernel_check_ioeventfd(struct xsim_hub *h, uint32_t domid,
				  const struct xsim_kfd_req *q, struct xsim_server **s)
{
	struct xsim_dom *d = hub_dom_get(h, domid);

	if (q->addr + q->addr_len < q->addr)
		return -EINVAL;
	if (q->addr_len != 1 && q->addr_len != 2 && q->addr_len != 4 && q->addr_len != 8)
		return -EINVAL;
	if (q->vcpus == 0 || q->vcpus > KERNEL_MAX_VCPUS)
		return -EINVAL;
	*s = d && q->server < XSIM_MAX_SERVERS ? d->servers[q->server] : NULL;
	if (!*s)
		return -EFAULT;   /* no ioreq page mapped at that address */
	if (q->vcpus != (*s)->nchans)
		return -EINVAL;
	return 0;
}

static int kernel_assign(struct xsim_hub *h, struct xsim_msg *m, const struct xsim_kfd_req *q,
			 bool irq, int fd_in)
{
	struct xsim_kernel *k = h->kernel;
	struct xsim_kfd f = { .irq = irq, .pid = q->pid, .fdno = q->fd, .efd = fd_in,
			      .domid = m->domid, .addr = q->addr, .len = q->addr_len, .vq = q->vq };
	int rc = 0;

	if (!irq && k->opts.assign_errno > 0)
		return -k->opts.assign_errno;
	if (irq && (q->dm_op_size > sizeof(q->dm_op) || q->dm_op_size < sizeof(f.op)))
		return -EINVAL;
	if (!irq && (rc = kernel_check_ioeventfd(h, m->domid, q, &f.s)) < 0)
		return rc;
	if (fd_in < 0)
		return -EBADF;
	if (kernel_find(k, irq, q))
		return -EBUSY;
	if (irq)
		memcpy(&f.op, q->dm_op, sizeof(f.op));
	if (k->n == k->cap) {
		struct xsim_kfd *v = realloc(k->v, (k->cap * 2 + 8) * sizeof(*v));

		if (!v)
			return -ENOMEM;
		k->v = v;
		k->cap = k->cap * 2 + 8;
	}
	k->v[k->n++] = f;
	return 1;   /* fd kept */
}

int hub_kernel_ioctl(struct xsim_hub *h, struct xsim_msg *m, int fd_in)
{
	struct xsim_kfd_req q;
	bool irq = m->op == XSIM_OP_IRQFD;

	if (h->kernel->opts.no_eventfd)
		return -ENOTTY;   /* Linux < 6.7, or built without CONFIG_XEN_PRIVCMD_EVENTFD */
	if (m->len != sizeof(q))
		return -EINVAL;
	memcpy(&q, m->data, sizeof(q));
	if (q.flags & ~1u)
		return -EINVAL;
	if (q.flags & 1u)
		return kernel_deassign(h->kernel, irq, &q);
	return kernel_assign(h, m, &q, irq, fd_in);
}

/* ---- lifetime and the tests' view ---- */

int hub_kernel_start(struct xsim_hub *h)
{
	h->kernel = calloc(1, sizeof(*h->kernel));
	return h->kernel ? 0 : -ENOMEM;
}

void hub_kernel_stop(struct xsim_hub *h)
{
	struct xsim_kernel *k = h->kernel;

	if (!k)
		return;
	for (unsigned i = 0; i < k->n; i++)
		close(k->v[i].efd);
	for (unsigned i = 0; i < k->ndead; i++)
		close(k->dead_fds[i]);
	free(k->dead_fds);
	free(k->v);
	free(k);
	h->kernel = NULL;
}

void xsim_kernel_set(struct xsim_hub *h, const struct xsim_kernel_opts *o)
{
	pthread_mutex_lock(&h->lock);
	h->kernel->opts = *o;
	pthread_mutex_unlock(&h->lock);
}

void xsim_kernel_count(struct xsim_hub *h, struct xsim_kernel_counts *c)
{
	struct xsim_kernel *k = h->kernel;

	memset(c, 0, sizeof(*c));
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < k->n; i++) {
		if (k->v[i].irq)
			c->irqfds++;
		else
			c->ioeventfds++;
	}
	c->claims = k->claims;
	pthread_mutex_unlock(&h->lock);
}
