/*
 * The dom0 kernel's privcmd eventfd support (Linux >= 6.7, CONFIG_XEN_PRIVCMD_EVENTFD), modelled
 * in the hub's process, never the daemon's: a vCPU's kick is completed without waiting for the
 * daemon to be scheduled, as in the real kernel.
 *
 * ioeventfd: Linux binds privcmd's handler to the ports named in IOCTL_PRIVCMD_IOEVENTFD, on the
 * IRQ the evtchn device already holds for them (IRQF_SHARED, registered second, so it runs
 * second), with late EOI: one delivery runs both handlers once, and the port stays masked
 * until the daemon unmasks it. Here the kernel has its own thread. Each delivery of a port
 * whose server has ioeventfds is queued for the daemon first, then for this thread
 * (evtchn_shm.h), which runs the handler of drivers/xen/privcmd.c ioeventfd_interrupt() with
 * the same plain stores, in four steps:
 *   check   state READY, type COPY, dir WRITE, else return;
 *   claim   state = INPROCESS;
 *   match   an ioeventfd of that server with addr + 0x50 == r->addr, addr_len == r->size,
 *           vq == (r->data & 0xffff) is signalled (count and data_is_ptr are not looked at);
 *   finish  state = IORESP_READY and the vCPU's port notified if one matched, else READY.
 * Between steps the thread can be made to wait for the daemon (struct xsim_race, which forces
 * one interleaving: lib_privcmd.c is the daemon's side) or to pause a random time
 * (xsim_kernel_opts.jitter_us, for stress tests). Deassigning a server's last ioeventfd waits
 * for a handler that is running on it, as free_irq() does.
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
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <xendevicemodel.h>
#include <xen/hvm/dm_op.h>

#include "tests/xensim/evtchn_shm.h"
#include "tests/xensim/guest.h"
#include "tests/xensim/hub.h"
#include "tests/xensim/kernel_handler.h"

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
	struct xsim_hub *h;
	struct xsim_kernel_opts opts;
	struct xsim_kfd *v;
	unsigned n, cap;
	uint64_t claims, handlers;
	/* Deassigned eventfds, closed with the hub: a guest may still be polling the number. */
	int *dead_fds;
	unsigned ndead;
	int bell;                 /* deliveries for the handler (evtchn_shm.h) */
	int stop;                 /* eventfd: the thread exits */
	pthread_t thread;
	bool running;             /* the thread exists */
	struct xsim_server *busy; /* the server whose slot the handler is on, or NULL */
	pthread_cond_t idle;      /* busy became NULL (with the hub's lock) */
	unsigned seed;
};

/* ---- the ioeventfd handler ---- */

static struct xsim_kfd *kernel_match(struct xsim_kernel *k, struct xsim_server *s,
				     volatile struct ioreq *r)
{
	for (unsigned i = 0; i < k->n; i++) {
		struct xsim_kfd *f = &k->v[i];

		if (!f->irq && f->s == s && kh_matches(r, f->addr, f->len, f->vq))
			return f;
	}
	return NULL;
}

static int64_t kernel_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait (futex, bounded) until *word satisfies word >= want; false on timeout. */
static bool kernel_wait_ge(_Atomic uint32_t *word, uint32_t want)
{
	int64_t deadline = kernel_now_ms() + XSIM_RACE_WAIT_MS;

	for (;;) {
		uint32_t v = atomic_load(word);
		int64_t left = deadline - kernel_now_ms();

		if (v >= want)
			return true;
		if (left <= 0)
			return false;
		struct timespec ts = { left / 1000, (left % 1000) * 1000000 };

		syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, v, &ts, NULL, 0);
	}
}

/* Before step k: under a schedule, wait for the daemon; otherwise maybe pause (jitter). */
static void kernel_before(struct xsim_kernel *k, struct xsim_race *race, unsigned step)
{
	if (race) {
		if (race->at[step] && !kernel_wait_ge(&race->dpoint, race->at[step]))
			atomic_fetch_add(&race->timeouts, 1);
		return;
	}
	if (k->opts.jitter_us) {
		unsigned us = (unsigned)rand_r(&k->seed) % (k->opts.jitter_us + 1);

		if (us % 4 == 0)
			sched_yield();
		else if (us)
			usleep(us);
	}
}

static void kernel_after(struct xsim_race *race, uint32_t steps)
{
	if (!race)
		return;
	atomic_store(&race->ksteps, steps);
	syscall(SYS_futex, (uint32_t *)&race->ksteps, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* The schedule, when the test armed one for this slot. */
static struct xsim_race *kernel_race(struct xsim_chan *ch)
{
	struct xsim_race *r = &ch->d->ctl->race;

	if (!atomic_load(&r->armed) || r->server != ch->s->id || r->vcpu != ch->vcpu)
		return NULL;
	atomic_fetch_add(&r->handlers, 1);
	return r;
}

/* One delivery for the handler, copied under the hub's lock. */
struct kernel_job {
	struct xsim_chan *ch;
	struct xsim_evtchn_page *pg;   /* the daemon's binding: where "response ready" goes */
	unsigned evidx;
};

/* ioeventfd_interrupt() for the slot behind j->ch. Called without the hub's lock. */
static void kernel_handle(struct xsim_kernel *k, const struct kernel_job *j)
{
	struct xsim_hub *h = k->h;
	struct xsim_chan *ch = j->ch;
	volatile struct ioreq *r = &ch->s->slots[ch->vcpu];
	struct xsim_race *race = kernel_race(ch);
	struct xsim_kfd *f = NULL;
	uint64_t one = 1;

	kernel_before(k, race, 0);
	if (!kh_check(r)) {
		kernel_after(race, XSIM_RACE_DONE);
		return;
	}
	kernel_after(race, 1);
	kernel_before(k, race, 1);
	kh_set_state(r, STATE_IOREQ_INPROCESS);
	kernel_after(race, 2);
	kernel_before(k, race, 2);
	pthread_mutex_lock(&h->lock);
	f = kernel_match(k, ch->s, r);
	if (f && write(f->efd, &one, sizeof(one)) != sizeof(one))
		f = NULL;   /* a counter at its maximum: the kernel would block; never here */
	if (f)
		k->claims++;
	pthread_mutex_unlock(&h->lock);
	kernel_after(race, 3);
	kernel_before(k, race, 3);
	kh_set_state(r, f ? STATE_IORESP_READY : STATE_IOREQ_READY);
	if (f) {
		/* notify_remote_via_evtchn(): the vCPU's port, what the guest side waits on. */
		atomic_fetch_add_explicit(&j->pg->notify[j->evidx], 1, memory_order_release);
		syscall(SYS_futex, (uint32_t *)&j->pg->notify[j->evidx], FUTEX_WAKE, INT_MAX, NULL,
			NULL, 0);
	}
	kernel_after(race, XSIM_RACE_DONE);
}

/* Take one delivered binding the handler shares, its server marked busy. Lock held. */
static bool kernel_take(struct xsim_kernel *k, struct kernel_job *j)
{
	for (struct xsim_evh *e = k->h->evhs; e; e = e->next) {
		for (unsigned w = 0; w < XSIM_EVTCHN_MAX / 64; w++) {
			uint64_t v = atomic_load_explicit(&e->pg->kready[w], memory_order_relaxed);

			while (v) {
				unsigned b = (unsigned)__builtin_ctzll(v);
				uint64_t bit = UINT64_C(1) << b;
				struct xsim_chan *ch;

				v &= ~bit;
				/* acquire: pairs with the delivery's release (evtchn_shm.h). */
				if (!(atomic_fetch_and_explicit(&e->pg->kready[w], ~bit,
								memory_order_acquire) & bit))
					continue;
				ch = e->bound[w * 64 + b];
				if (ch && ch->s->kfds && ch->d->alive) {
					k->busy = ch->s;
					*j = (struct kernel_job){ ch, e->pg, w * 64 + b };
					return true;
				}
			}
		}
	}
	return false;
}

static void *kernel_thread(void *arg)
{
	struct xsim_kernel *k = arg;
	struct xsim_hub *h = k->h;
	struct pollfd p[2] = { { .fd = k->bell, .events = POLLIN },
			       { .fd = k->stop, .events = POLLIN } };

	for (;;) {
		struct kernel_job j;
		uint64_t n;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents && read(k->bell, &n, sizeof(n)) < 0 && errno != EAGAIN)
			break;
		pthread_mutex_lock(&h->lock);
		while (kernel_take(k, &j)) {
			k->handlers++;
			pthread_mutex_unlock(&h->lock);
			kernel_handle(k, &j);
			pthread_mutex_lock(&h->lock);
			k->busy = NULL;
			pthread_cond_broadcast(&k->idle);
		}
		/* Nothing left to take: wake xsim_kernel_quiesce(). */
		pthread_cond_broadcast(&k->idle);
		pthread_mutex_unlock(&h->lock);
	}
	return NULL;
}

void hub_kernel_share(struct xsim_server *s, bool on)
{
	for (unsigned v = 0; v < s->nchans; v++)
		if (s->chans[v].evh)
			atomic_store(&s->chans[v].evh->pg->kflag[s->chans[v].evidx], on);
}

int hub_kernel_bell(struct xsim_hub *h)
{
	return h->kernel->bell;
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

/*
 * The last ioeventfd of a server goes: Linux frees its IRQ handlers, and free_irq() waits for
 * a handler still running. Called with the hub's lock, which the wait releases.
 */
static void kernel_unshare(struct xsim_kernel *k, struct xsim_server *s)
{
	hub_kernel_share(s, false);
	while (k->busy == s)
		pthread_cond_wait(&k->idle, &k->h->lock);
}

static int kernel_deassign(struct xsim_kernel *k, bool irq, const struct xsim_kfd_req *q)
{
	struct xsim_kfd *f = kernel_find(k, irq, q);
	struct xsim_server *s;
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
	s = f->irq ? NULL : f->s;
	*f = k->v[--k->n];
	if (s && --s->kfds == 0)
		kernel_unshare(k, s);
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
	/* The first ioeventfd binds the handler to the server's ports (alloc_ioreq). */
	if (!irq && f.s->kfds++ == 0)
		hub_kernel_share(f.s, true);
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
	struct xsim_kernel *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	k->h = h;
	k->seed = (unsigned)getpid();
	k->bell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	k->stop = eventfd(0, EFD_CLOEXEC);
	pthread_cond_init(&k->idle, NULL);
	h->kernel = k;
	if (k->bell < 0 || k->stop < 0 || pthread_create(&k->thread, NULL, kernel_thread, k) != 0) {
		hub_kernel_stop(h);
		return -ENOMEM;
	}
	k->running = true;
	return 0;
}

void hub_kernel_stop(struct xsim_hub *h)
{
	struct xsim_kernel *k = h->kernel;
	uint64_t one = 1;

	if (!k)
		return;
	if (k->running) {
		if (write(k->stop, &one, sizeof(one)) != sizeof(one))
			abort();   /* the thread would never exit */
		pthread_join(k->thread, NULL);
	}
	for (unsigned i = 0; i < k->n; i++)
		close(k->v[i].efd);
	for (unsigned i = 0; i < k->ndead; i++)
		close(k->dead_fds[i]);
	if (k->bell >= 0)
		close(k->bell);
	if (k->stop >= 0)
		close(k->stop);
	pthread_cond_destroy(&k->idle);
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
	c->handlers = k->handlers;
	pthread_mutex_unlock(&h->lock);
}

/* ---- forced interleavings (struct xsim_race) ---- */

void xsim_race_arm(struct xsim_dom *d, unsigned server, unsigned vcpu,
		   const uint8_t at[XSIM_RACE_STEPS])
{
	struct xsim_race *r = &d->ctl->race;

	atomic_store(&r->armed, 0);
	r->server = server;
	r->vcpu = vcpu;
	memcpy(r->at, at, XSIM_RACE_STEPS);
	atomic_store(&r->dpoint, 0);
	atomic_store(&r->ksteps, 0);
	atomic_store(&r->handlers, 0);
	atomic_store(&r->armed, 1);
}

void xsim_race_disarm(struct xsim_dom *d, struct xsim_race_result *res)
{
	struct xsim_race *r = &d->ctl->race;

	atomic_store(&r->armed, 0);
	/* Let a side still waiting on the other go at once. */
	atomic_store(&r->dpoint, UINT32_MAX);
	atomic_store(&r->ksteps, XSIM_RACE_DONE);
	syscall(SYS_futex, (uint32_t *)&r->dpoint, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	syscall(SYS_futex, (uint32_t *)&r->ksteps, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	if (res) {
		res->timeouts = atomic_load(&r->timeouts);
		res->handlers = atomic_load(&r->handlers);
	}
	atomic_store(&r->timeouts, 0);
}

/* Nothing delivered is waiting for the handler, and no handler runs. Lock held. */
static bool kernel_idle(struct xsim_kernel *k)
{
	if (k->busy)
		return false;
	for (struct xsim_evh *e = k->h->evhs; e; e = e->next)
		for (unsigned w = 0; w < XSIM_EVTCHN_MAX / 64; w++)
			if (atomic_load(&e->pg->kready[w]))
				return false;
	return true;
}

int xsim_kernel_quiesce(struct xsim_hub *h, int timeout_ms)
{
	struct xsim_kernel *k = h->kernel;
	struct timespec dl;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&h->lock);
	while (!kernel_idle(k) && rc == 0)
		rc = pthread_cond_timedwait(&k->idle, &h->lock, &dl) ? -ETIMEDOUT : 0;
	pthread_mutex_unlock(&h->lock);
	return rc;
}
