/*
 * The notify fast path: ioeventfds for QueueNotify, irqfds for interrupts (ioreq/fastpath.h).
 *
 * Setup order (undone in exact reverse by fastpath_stop()): per device, its irqfd, then one
 * ioeventfd per queue; each eventfd is created, assigned, then watched. A failure part-way
 * unwinds what was done, so the guest is served entirely by the ioreq path or entirely with
 * the fast path, never a mix the daemon's match rule would not know about.
 */
#include "ioreq/fastpath.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <ev.h>
#include <xendevicemodel.h>
#include <xen/hvm/dm_op.h>

#include "ioreq/privcmd.h"
#include "ioreq/slot.h"
#include "lib/log.h"
#include "lib/persist.h"
#include "lib/util.h"

struct fp_queue {
	ev_io w;                      /* the ioeventfd, readable when the kernel claimed a kick */
	struct fastpath *f;
	struct fp_dev *fd;
	unsigned q;
	bool assigned;
};

/*
 * Teardown runs after the devices are destroyed (guest_teardown frees them before closing the
 * Xen side), so what deassigning needs is copied here; ops are not called then.
 */
struct fp_dev {
	const struct xen_window_ops *ops;
	void *opaque;
	char name[80];
	uint32_t irq;
	uint64_t base;
	unsigned nqueues;             /* queues of the window */
	int irqfd;
	bool irq_assigned;
	unsigned nq;                  /* queues with an assigned ioeventfd (0..nq-1) */
	struct fp_queue *qs;          /* nqueues entries */
};

struct fastpath {
	struct fastpath_params p;
	unsigned ndev;
	unsigned nqueues;
	struct slot_kernel kernel;    /* what the kernel claims: kfds[i] mirrors devs[i] */
	struct slot_kfd *kfds;
	bool dead;
	struct fastpath_stats st;
	struct ratelimit rl;
	struct fp_dev devs[];
};

/* ---- the loop side ---- */

static void fp_queue_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct fp_queue *fq = container_of(w, struct fp_queue, w);
	uint64_t n;

	(void)loop;
	(void)revents;
	/* The kernel adds one per claimed kick; any number of them is one look at the queue. */
	if (read(w->fd, &n, sizeof(n)) != sizeof(n))
		return;
	fq->f->st.notifies += n;      /* kicks, as the kernel counted them */
	fq->fd->ops->notify(fq->fd->opaque, fq->q);
}

const struct slot_kernel *fastpath_kernel(const struct fastpath *f)
{
	return &f->kernel;
}

bool fastpath_raise(struct fastpath *f, unsigned i)
{
	struct fp_dev *fd = i < f->ndev ? &f->devs[i] : NULL;
	uint64_t one = 1;

	if (!fd || !fd->irq_assigned)
		return false;
	if (write(fd->irqfd, &one, sizeof(one)) != sizeof(one)) {
		log_rl(&f->rl, LOG_WARNING, "xen: %s: irqfd of %s: %s", f->p.name, fd->name,
		       strerror(errno));
		return false;
	}
	f->st.irqs++;
	return true;
}

unsigned fastpath_queues(const struct fastpath *f)
{
	return f->nqueues;
}

void fastpath_get_stats(const struct fastpath *f, struct fastpath_stats *st)
{
	*st = f->st;
}

/* ---- assign and deassign ---- */

static int fp_ioeventfd_at(const struct fastpath_params *p, uint64_t page, uint64_t base,
			   unsigned q, int efd, bool deassign)
{
	struct xvd_privcmd_ioeventfd a = {
		.ioreq = page,
		.ports = (uintptr_t)p->ports,
		.addr = base,
		.addr_len = SLOT_NOTIFY_LEN,
		.event_fd = (uint32_t)efd,
		.vcpus = p->nr_vcpus,
		.vq = q,
		.flags = deassign ? XVD_PRIVCMD_DEASSIGN : 0,
		.dom = (uint16_t)p->domid,
	};

	return xen_privcmd_ioeventfd(p->pc, &a);
}

static int fp_ioeventfd(struct fastpath *f, const struct fp_dev *fd, unsigned q, int efd,
			bool deassign)
{
	return fp_ioeventfd_at(&f->p, (uintptr_t)f->p.ioreq_page, fd->base, q, efd, deassign);
}

static void fp_name(char *buf, size_t len, const char *what, unsigned w, int q)
{
	if (q < 0)
		snprintf(buf, len, "%s.%u", what, w);
	else
		snprintf(buf, len, "%s.%u.%d", what, w, q);
}

static int fp_irqfd_at(const struct fastpath_params *p, uint32_t irq, int efd, bool deassign)
{
	/* Every level-1 write to an SPI is an injection on Arm, so one DM op does it all. */
	struct xen_dm_op op = {
		.op = XEN_DMOP_set_irq_level,
		.u.set_irq_level = { .irq = irq, .level = 1 },
	};
	struct xvd_privcmd_irqfd a = {
		.dm_op = (uintptr_t)&op,
		.size = sizeof(op),
		.fd = (uint32_t)efd,
		.flags = deassign ? XVD_PRIVCMD_DEASSIGN : 0,
		.dom = (uint16_t)p->domid,
	};

	return xen_privcmd_irqfd(p->pc, &a);
}

static int fp_irqfd(struct fastpath *f, const struct fp_dev *fd, bool deassign)
{
	return fp_irqfd_at(&f->p, fd->irq, fd->irqfd, deassign);
}

unsigned fastpath_forget(const struct fastpath_params *p, uint64_t old_page,
			 const struct fastpath_window *wins, unsigned nwin)
{
	unsigned n = 0;
	char name[32];
	int efd;

	for (unsigned w = 0; w < nwin; w++) {
		for (unsigned q = 0; q < wins[w].nqueues; q++) {
			fp_name(name, sizeof(name), "ioev", w, (int)q);
			if ((efd = fdstore_take(p->store, name)) < 0)
				continue;
			n += fp_ioeventfd_at(p, old_page, wins[w].base, q, efd, true) == 0;
			close(efd);
		}
		fp_name(name, sizeof(name), "irqfd", w, -1);
		if ((efd = fdstore_take(p->store, name)) >= 0) {
			fp_irqfd_at(p, wins[w].irq, efd, true);
			close(efd);
		}
	}
	return n;
}

static int fp_new_eventfd(void)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	return fd < 0 ? -errno : fd;
}

/* The next instance deassigns what the kernel holds with these (fastpath_forget()). */
static void fp_keep(struct fastpath *f, const struct fp_dev *fd, int q, int efd)
{
	char name[32];

	fp_name(name, sizeof(name), q < 0 ? "irqfd" : "ioev", (unsigned)(fd - f->devs), q);
	fdstore_keep(f->p.store, name, efd);
}

static int fp_start_queue(struct fastpath *f, struct fp_dev *fd, unsigned q)
{
	struct fp_queue *fq = &fd->qs[q];
	int efd = fp_new_eventfd(), rc;

	if (efd < 0)
		return efd;
	rc = fp_ioeventfd(f, fd, q, efd, false);
	if (rc < 0) {
		close(efd);
		return rc;
	}
	fp_keep(f, fd, (int)q, efd);
	fq->f = f;
	fq->fd = fd;
	fq->q = q;
	fq->assigned = true;
	ev_io_init(&fq->w, fp_queue_cb, efd, EV_READ);
	ev_io_start(f->p.loop, &fq->w);
	/* From here on the kernel claims kicks of queues 0..q: so does our match rule. */
	fd->nq = q + 1;
	f->kfds[fd - f->devs].nq = fd->nq;
	f->nqueues++;
	return 0;
}

static int fp_start_dev(struct fastpath *f, struct fp_dev *fd)
{
	int rc;

	fd->qs = calloc(fd->nqueues ? fd->nqueues : 1, sizeof(*fd->qs));
	if (!fd->qs)
		return -ENOMEM;
	fd->irqfd = fp_new_eventfd();
	if (fd->irqfd < 0)
		return fd->irqfd;
	rc = fp_irqfd(f, fd, false);
	if (rc < 0)
		return rc;
	fd->irq_assigned = true;
	fp_keep(f, fd, -1, fd->irqfd);
	for (unsigned q = 0; q < fd->nqueues; q++)
		if ((rc = fp_start_queue(f, fd, q)) < 0)
			return rc;
	return 0;
}

/* Teardown calls that fail: expected once the domain is gone, a warning otherwise. */
static void fp_log_undo(const struct fastpath *f, const char *what, const char *dev, int err)
{
	xvd_log(f->dead ? LOG_DEBUG : LOG_WARNING, "xen: %s: deassigning the %s of %s: %s",
		f->p.name, what, dev, strerror(-err));
}

static void fp_stop_dev(struct fastpath *f, struct fp_dev *fd)
{
	int rc;

	for (unsigned q = fd->nq; q-- > 0;) {
		struct fp_queue *fq = &fd->qs[q];

		if (!fq->assigned)
			continue;
		/* Deassign first: a kick claimed meanwhile still reaches the device. */
		rc = fp_ioeventfd(f, fd, q, fq->w.fd, true);
		if (rc < 0)
			fp_log_undo(f, "ioeventfd", fd->name, rc);
		fd->nq = q;
		f->kfds[fd - f->devs].nq = q;
		ev_io_stop(f->p.loop, &fq->w);
		close(fq->w.fd);
		fq->assigned = false;
	}
	if (fd->irq_assigned && (rc = fp_irqfd(f, fd, true)) < 0)
		fp_log_undo(f, "irqfd", fd->name, rc);
	fd->irq_assigned = false;
	if (fd->irqfd >= 0)
		close(fd->irqfd);
	fd->irqfd = -1;
	free(fd->qs);
	fd->qs = NULL;
}

void fastpath_stop(struct fastpath *f, bool dead)
{
	if (!f)
		return;
	f->dead = dead;
	for (unsigned i = f->ndev; i-- > 0;)
		fp_stop_dev(f, &f->devs[i]);
	free(f->kfds);
	free(f);
}

int fastpath_start(const struct fastpath_params *p, const struct fastpath_window *wins,
		   unsigned ndev, struct fastpath **out)
{
	struct fastpath *f = calloc(1, sizeof(*f) + ndev * sizeof(f->devs[0]));
	int rc = 0;

	*out = NULL;
	if (!f)
		return -ENOMEM;
	f->p = *p;
	f->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	f->kfds = calloc(ndev ? ndev : 1, sizeof(*f->kfds));
	if (!f->kfds) {
		free(f);
		return -ENOMEM;
	}
	f->kernel = (struct slot_kernel){ .fds = f->kfds, .n = ndev };
	for (unsigned i = 0; i < ndev; i++) {
		f->devs[i] = (struct fp_dev){ .ops = wins[i].ops, .opaque = wins[i].opaque,
					      .irq = wins[i].irq, .base = wins[i].base,
					      .nqueues = wins[i].nqueues, .irqfd = -1 };
		snprintf(f->devs[i].name, sizeof(f->devs[i].name), "%s", wins[i].name);
		f->kfds[i].base = wins[i].base;
	}
	for (unsigned i = 0; rc == 0 && i < ndev; i++) {
		f->ndev = i + 1;
		rc = fp_start_dev(f, &f->devs[i]);
	}
	if (rc < 0) {
		fastpath_stop(f, false);
		return rc;
	}
	*out = f;
	return 0;
}
