/*
 * The guest's side of xensim: vCPU accesses through the ioreq slots, interrupts, grants,
 * xenstore polling, the sim daemon as a child process, and the vdriver adapters.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ioreq/gmem.h"
#include "tests/xensim/evtchn_shm.h"
#include "tests/xensim/guest.h"
#include "tests/xensim/hub.h"

#define GUEST_TIMEOUT_MS 5000

extern char **environ;

static int64_t guest_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void *xsim_dom_ram(struct xsim_dom *d, uint64_t gpa, uint64_t len)
{
	uint64_t off = 0;

	for (unsigned b = 0; b < 2; b++) {
		uint64_t base = d->ctl->bank_base[b], size = d->ctl->bank_size[b];

		if (gpa >= base && gpa - base < size && len <= size - (gpa - base))
			return d->ram + off + (gpa - base);
		off += size;
	}
	return NULL;
}

bool xsim_dom_routed(struct xsim_dom *d, uint64_t addr)
{
	bool r;

	pthread_mutex_lock(&d->hub->lock);
	r = d->alive && hub_route(d, addr, 1) != NULL;
	pthread_mutex_unlock(&d->hub->lock);
	return r;
}

int xsim_dom_route_id(struct xsim_dom *d, uint64_t addr, unsigned len)
{
	struct xsim_server *s;

	pthread_mutex_lock(&d->hub->lock);
	s = d->alive ? hub_route(d, addr, len) : NULL;
	pthread_mutex_unlock(&d->hub->lock);
	return s ? (int)s->id : -1;
}

bool xsim_port_idle(struct xsim_dom *d, unsigned server, unsigned vcpu)
{
	struct xsim_server *s;
	bool idle = false;

	pthread_mutex_lock(&d->hub->lock);
	s = server < XSIM_MAX_SERVERS ? d->servers[server] : NULL;
	if (s && vcpu < s->nchans && s->chans[vcpu].evh) {
		struct xsim_evtchn_page *pg = s->chans[vcpu].evh->pg;
		unsigned i = s->chans[vcpu].evidx;

		idle = !(atomic_load(&pg->state[i]) & XSIM_EVTCHN_MASKED) &&
		       !(atomic_load(&pg->ready[i / 64]) & (UINT64_C(1) << (i % 64)));
	}
	pthread_mutex_unlock(&d->hub->lock);
	return idle;
}

/* ---- ioreq slots ---- */

/* Where an access from vcpu to route goes: the slot of the covering server. route_lock held. */
static int guest_target(struct xsim_dom *d, unsigned vcpu, uint64_t route, uint64_t len,
			struct ioreq **slot, struct xsim_server **srv)
{
	struct xsim_server *s;
	int rc = 0;

	if (vcpu >= d->nr_vcpus)
		return -EINVAL;
	s = d->alive ? hub_route(d, route, len) : NULL;
	if (!d->alive)
		rc = -ESRCH;
	else if (!s)
		rc = -EFAULT;   /* no server: Xen injects a data abort into the guest */
	else if (vcpu >= s->nchans)
		rc = -ENXIO;    /* no slot for this vCPU (ioreq_pages_max) */
	else {
		*slot = &s->slots[vcpu];
		*srv = s;
	}
	return rc;
}

static void guest_post(volatile struct ioreq *slot, const struct ioreq *r, uint8_t state)
{
	volatile char *p = (volatile char *)slot;
	struct ioreq tmp = *r;
	uint8_t bits;

	/* The byte of state, data_is_ptr, dir and df, built aside and stored at once. */
	tmp.state = state;
	memcpy(&bits, (const char *)&tmp + 30, 1);
	/* Fields one by one (the device model may be looking: relaxed atomics), vp_eport kept. */
	__atomic_store_n((volatile uint64_t *)(p + 0), r->addr, __ATOMIC_RELAXED);
	__atomic_store_n((volatile uint64_t *)(p + 8), r->data, __ATOMIC_RELAXED);
	__atomic_store_n((volatile uint32_t *)(p + 16), r->count, __ATOMIC_RELAXED);
	__atomic_store_n((volatile uint32_t *)(p + 20), r->size, __ATOMIC_RELAXED);
	__atomic_store_n((volatile uint8_t *)(p + 31), r->type, __ATOMIC_RELAXED);
	/* Release: every field above is visible before the state says READY (Xen's wmb). */
	__atomic_store_n((volatile uint8_t *)(p + 30), bits, __ATOMIC_RELEASE);
}

/* Xen signals vp_eport; nobody hears it while the port is unbound. */
static void guest_notify(const struct xsim_chan *ch)
{
	if (ch->evh)
		xsim_evtchn_fire_lag(ch->evh->pg, ch->evh->doorbell, hub_kernel_bell(ch->d->hub),
				     ch->evidx, hub_kernel_lag(ch->d->hub));
}

static unsigned guest_state(const volatile struct ioreq *slot)
{
	/* acquire: a response's data is read only after its state (Xen's rmb). */
	return __atomic_load_n((const volatile uint8_t *)slot + 30, __ATOMIC_ACQUIRE) & 0x0f;
}

/*
 * Xen's ioreq_send(): a slot that is not NONE means a device model wrote it out of turn, unless
 * it is what a test left there itself (xsim_ioreq_raw without waiting).
 */
static bool guest_slot_free(struct xsim_dom *d, unsigned vcpu, struct ioreq *slot)
{
	unsigned st = guest_state(slot);
	bool mine = d->test_left[vcpu] == slot;

	d->test_left[vcpu] = NULL;
	if (st == STATE_IOREQ_NONE || mine)
		return true;
	atomic_fetch_add(&d->io_bad_state, 1);
	atomic_store(&d->io_last_bad_state, st);
	fprintf(stderr, "xsim: d%u v%u: device model set bad IO state %u\n", d->domid, vcpu, st);
	return false;
}

/* Xen's wait_for_io(): the state never goes back, nor anywhere unknown (a test's own aside). */
static bool guest_state_ok(struct xsim_dom *d, unsigned vcpu, unsigned prev, unsigned st)
{
	if (st == prev || (st > prev && st <= STATE_IORESP_READY))
		return true;
	atomic_fetch_add(&d->io_backwards, 1);
	fprintf(stderr, "xsim: d%u v%u: weird HVM ioreq state transition %u -> %u\n", d->domid,
		vcpu, prev, st);
	return false;
}

void xsim_dom_io_faults(struct xsim_dom *d, struct xsim_io_faults *f)
{
	f->bad_state = atomic_load(&d->io_bad_state);
	f->last_bad_state = atomic_load(&d->io_last_bad_state);
	f->backwards = atomic_load(&d->io_backwards);
}

/*
 * Wait for the response as Xen's wait_for_io() does: look at the state; while it is READY or
 * INPROCESS, sleep until the vCPU's port is notified, then look again; a state that went back
 * or is unknown fails (Xen would crash the domain); IORESP_READY is consumed (NONE). The
 * device model sets IORESP_READY, then notifies, which bumps the binding's notify counter and
 * wakes it (a futex). The counter is read before the state, so a notification in between makes
 * the futex wait return at once. The vCPU waits on its own port, whoever binds it: a device
 * model that restarts binds it again, on another handle, so the binding is looked up afresh
 * each time round and a sleep lasts at most GUEST_REBIND_MS (a rebinding wakes nobody). With
 * the port unbound nothing notifies.
 */
#define GUEST_REBIND_MS 50

static _Atomic uint32_t *guest_notify_word(struct xsim_dom *d, struct xsim_server *s,
					   unsigned vcpu, _Atomic uint32_t *unbound)
{
	_Atomic uint32_t *word = unbound;

	pthread_mutex_lock(&d->hub->lock);
	if (s->chans[vcpu].evh)
		word = &s->chans[vcpu].evh->pg->notify[s->chans[vcpu].evidx];
	pthread_mutex_unlock(&d->hub->lock);
	return word;
}

static int guest_wait(struct xsim_dom *d, unsigned vcpu, volatile struct ioreq *slot,
		      struct xsim_server *s, const struct xsim_chan *ch, unsigned posted,
		      int timeout_ms)
{
	int64_t deadline = guest_now_ms() + timeout_ms;
	_Atomic uint32_t unbound = 0;
	_Atomic uint32_t *word = ch->evh ? &ch->evh->pg->notify[ch->evidx] : &unbound;
	unsigned prev = posted;   /* READY, but for a test posting a malformed state */

	for (;;) {
		/* acquire: the state below is read after the counter, see above. */
		uint32_t seen = atomic_load_explicit(word, memory_order_acquire);
		unsigned st = guest_state(slot);

		if (!guest_state_ok(d, vcpu, prev, st))
			return -EIO;
		prev = st;
		if (st == STATE_IORESP_READY)
			return 0;
		int64_t left = deadline - guest_now_ms();

		if (left <= 0)
			return -ETIMEDOUT;
		if (left > GUEST_REBIND_MS)
			left = GUEST_REBIND_MS;
		struct timespec ts = { left / 1000, (left % 1000) * 1000000 };

		/* Shared futex: the device model's process wakes it. */
		if (syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, seen, &ts, NULL, 0) < 0 &&
		    errno == ETIMEDOUT)
			word = guest_notify_word(d, s, vcpu, &unbound);
	}
}

/* Route [route, route + len) as Xen does (one server's range must hold it all), post, wait. */
static int guest_ioreq(struct xsim_dom *d, unsigned vcpu, uint64_t route, uint64_t len,
		       const struct ioreq *req, struct ioreq *resp, int timeout_ms)
{
	struct ioreq *slot = NULL;
	struct xsim_server *s = NULL;
	struct xsim_chan ch;
	int rc;

	if (vcpu >= d->nr_vcpus)
		return -EINVAL;
	/*
	 * Routed and posted in one go (route_lock), as Xen chooses the server and sends from the
	 * vCPU's own trap: a device model unrouting a range meanwhile comes before (the request
	 * goes elsewhere) or after (it finds the request posted). The port is notified as it is
	 * bound then; one that binds it later finds the request when it looks at the slots, as it
	 * must after binding.
	 */
	pthread_rwlock_rdlock(&d->route_lock);
	rc = guest_target(d, vcpu, route, len, &slot, &s);
	pthread_mutex_lock(&d->vcpu_lock[vcpu]);
	if (rc == 0 && !guest_slot_free(d, vcpu, slot))
		rc = -EIO;   /* Xen refuses the access: a data abort in the guest */
	if (rc == 0)
		guest_post(slot, req, req->state);
	pthread_rwlock_unlock(&d->route_lock);
	if (rc == 0) {
		pthread_mutex_lock(&d->hub->lock);
		ch = s->chans[vcpu];
		pthread_mutex_unlock(&d->hub->lock);
	}
	if (rc < 0) {
		pthread_mutex_unlock(&d->vcpu_lock[vcpu]);
		return rc;
	}
	guest_notify(&ch);
	if (!resp)
		d->test_left[vcpu] = slot;
	if (resp) {
		rc = guest_wait(d, vcpu, slot, s, &ch, req->state, timeout_ms);
		if (rc == 0)
			*resp = *slot;
		/*
		 * Xen consumes the response (or, after a timeout, gives up on the request) and
		 * frees the slot. A device model's late answer then finds NONE overwritten: the
		 * next post sees its IORESP_READY and counts a bad state.
		 */
		if (rc != -EIO)
			__atomic_store_n((volatile uint8_t *)slot + 30,
					 (uint8_t)(__atomic_load_n((volatile uint8_t *)slot + 30,
								   __ATOMIC_RELAXED) & ~0x0fu),
					 __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&d->vcpu_lock[vcpu]);
	return rc;
}

int xsim_ioreq_raw(struct xsim_dom *d, unsigned vcpu, uint64_t route_addr,
		   const struct ioreq *req, struct ioreq *resp, int timeout_ms)
{
	/* The request's own fields may be anything: it is routed by route_addr alone. */
	return guest_ioreq(d, vcpu, route_addr, 1, req, resp, timeout_ms);
}

int xsim_mmio(struct xsim_dom *d, unsigned vcpu, uint64_t addr, unsigned size, bool write,
	      uint64_t *data, int timeout_ms)
{
	struct ioreq req = {
		.addr = addr, .data = write ? *data : 0, .count = 1, .size = size,
		.state = STATE_IOREQ_READY, .dir = write ? IOREQ_WRITE : IOREQ_READ,
		.type = IOREQ_TYPE_COPY,
	}, resp;
	int rc = guest_ioreq(d, vcpu, addr, size ? size : 1, &req, &resp, timeout_ms);

	if (rc == 0 && !write)
		*data = size < 8 ? resp.data & ((UINT64_C(1) << (8 * size)) - 1) : resp.data;
	return rc;
}

uint64_t xsim_mmio_read(struct xsim_dom *d, unsigned vcpu, uint64_t addr, unsigned size)
{
	uint64_t v = 0;

	if (xsim_mmio(d, vcpu, addr, size, false, &v, GUEST_TIMEOUT_MS) < 0)
		return ~UINT64_C(0);
	return v;
}

int xsim_mmio_write(struct xsim_dom *d, unsigned vcpu, uint64_t addr, unsigned size,
		    uint64_t val)
{
	return xsim_mmio(d, vcpu, addr, size, true, &val, GUEST_TIMEOUT_MS);
}

/* The first MMIO address of each enabled server, to route a broadcast to each. */
static unsigned guest_servers(struct xsim_dom *d, uint64_t *routes)
{
	unsigned n = 0;

	pthread_mutex_lock(&d->hub->lock);
	for (unsigned i = 0; i < XSIM_MAX_SERVERS; i++) {
		struct xsim_server *s = d->servers[i];

		for (unsigned r = 0; s && s->enabled && r < s->nranges; r++) {
			if (s->ranges[r].mmio && hub_route(d, s->ranges[r].start, 1) == s) {
				routes[n++] = s->ranges[r].start;
				break;
			}
		}
	}
	pthread_mutex_unlock(&d->hub->lock);
	return n;
}

int xsim_invalidate(struct xsim_dom *d, unsigned vcpu, int timeout_ms)
{
	uint64_t routes[XSIM_MAX_SERVERS];
	unsigned n = guest_servers(d, routes);
	struct ioreq req = {
		.type = IOREQ_TYPE_INVALIDATE, .size = 4, .count = 1, .dir = IOREQ_WRITE,
		.data = ~UINT64_C(0), .state = STATE_IOREQ_READY,
	}, resp;

	for (unsigned i = 0; i < n; i++) {
		int rc = xsim_ioreq_raw(d, vcpu, routes[i], &req, &resp, timeout_ms);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- interrupts ---- */

uint32_t xsim_irq_edges(struct xsim_dom *d, unsigned spi)
{
	if (spi >= XSIM_NR_IRQS)
		return 0;
	hub_kernel_irq_sync(d, spi);
	return atomic_load(&d->ctl->irq_edges[spi]);
}

bool xsim_irq_level(struct xsim_dom *d, unsigned spi)
{
	if (spi >= XSIM_NR_IRQS)
		return false;
	hub_kernel_irq_sync(d, spi);
	return atomic_load(&d->ctl->irq_level[spi]);
}

int xsim_irq_wait(struct xsim_dom *d, unsigned spi, uint32_t *seen, int timeout_ms)
{
	int64_t deadline = guest_now_ms() + timeout_ms;

	if (spi >= XSIM_NR_IRQS)
		return 0;
	for (;;) {
		uint32_t cur = xsim_irq_edges(d, spi);
		int64_t left = deadline - guest_now_ms();

		if (cur != *seen) {
			*seen = cur;
			return 1;
		}
		if (left <= 0)
			return 0;
		struct timespec ts = { left / 1000, (left % 1000) * 1000000 };

		if (hub_kernel_irq_poll(d, spi, left))
			continue;   /* the line has irqfds: the daemon's write wakes us */
		/* Shared futex: the daemon process wakes it after counting an edge. */
		syscall(SYS_futex, (uint32_t *)&d->ctl->irq_edges[spi], FUTEX_WAIT, cur, &ts,
			NULL, 0);
	}
}

/* ---- grants ---- */

int xsim_grant(struct xsim_dom *d, uint32_t ref, uint64_t gfn, bool readonly)
{
	struct xsim_grant *g;

	if (ref >= XSIM_NR_GRANTS)
		return -EINVAL;
	g = &d->ctl->grants[ref];
	g->frame = gfn;
	g->domid = 0;
	/* Release: the frame is visible before the entry is valid. */
	atomic_store_explicit(&g->flags, XSIM_GNT_VALID | (readonly ? XSIM_GNT_READONLY : 0),
			      memory_order_release);
	return 0;
}

void xsim_grant_revoke(struct xsim_dom *d, uint32_t ref)
{
	if (ref < XSIM_NR_GRANTS)
		atomic_store_explicit(&d->ctl->grants[ref].flags, 0, memory_order_release);
}

/* Reserve n consecutive refs; 0 when the table is full. */
static uint32_t guest_grefs(struct xsim_dom *d, uint64_t n)
{
	uint32_t ref = 0;

	pthread_mutex_lock(&d->hub->lock);
	if (n && n <= XSIM_NR_GRANTS - d->next_gref) {
		ref = d->next_gref;
		d->next_gref += (uint32_t)n;
	}
	pthread_mutex_unlock(&d->hub->lock);
	return ref;
}

uint64_t xsim_grant_addr(struct xsim_dom *d, uint64_t gpa, uint64_t len, bool readonly)
{
	uint64_t first, n;
	uint32_t ref;

	if (!gmem_range_ok(gpa, len))
		return 0;
	first = gpa / XSIM_PAGE;
	n = (gpa + len - 1) / XSIM_PAGE - first + 1;
	ref = guest_grefs(d, n);
	if (!ref)
		return 0;
	for (uint64_t i = 0; i < n; i++)
		xsim_grant(d, ref + (uint32_t)i, first + i, readonly);
	return GMEM_GRANT_BIT | ((uint64_t)ref << 12) | (gpa & (XSIM_PAGE - 1));
}

/* ---- xenstore ---- */

int xsim_xs_wait(struct xsim_hub *h, const char *path, const char *want, int timeout_ms)
{
	int64_t deadline = guest_now_ms() + timeout_ms;

	for (;;) {
		char *v = xsim_xs_read(h, path);
		bool done = v && (!want || strcmp(v, want) == 0);

		free(v);
		if (done)
			return 0;
		if (guest_now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(2000);
	}
}

/* ---- the sim daemon ---- */

static int daemon_notify_socket(struct xsim_hub *h, struct xsim_daemon *dm, const char *tag)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int n = snprintf(dm->notify_path, sizeof(dm->notify_path), "%s/%s.notify", h->dir, tag);

	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, dm->notify_path, (size_t)n + 1);
	unlink(dm->notify_path);
	dm->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (dm->notify_fd < 0)
		return -errno;
	if (bind(dm->notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(dm->notify_fd);
		dm->notify_fd = -1;
		return -errno;
	}
	return 0;
}

static bool daemon_env_ours(const char *e)
{
	static const char *const ours[] = { "NOTIFY_SOCKET=", "RUNTIME_DIRECTORY=", "LISTEN_FDS=",
					    "LISTEN_PID=", "LISTEN_FDNAMES=", "XSIM_KILL_AT=" };

	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
		if (strncmp(e, ours[i], strlen(ours[i])) == 0)
			return true;
	return false;
}

#define DAEMON_ENV_OWN 6   /* the most strings daemon_env() allocates */

/* Free what daemon_env() allocated: the entries that are not environ's. */
static void daemon_free_env(char **env)
{
	for (size_t i = 0; env[i]; i++) {
		bool inherited = false;

		for (size_t k = 0; environ[k] && !inherited; k++)
			inherited = env[i] == environ[k];
		if (!inherited)
			free(env[i]);
	}
	free(env);
}

/*
 * environ plus what systemd sets (replacing inherited ones): NOTIFY_SOCKET (none when notify
 * is NULL), RUNTIME_DIRECTORY, and LISTEN_* for nfds stored descriptors; LISTEN_PID's digits
 * are left blank for the child to fill in (*pid_digits).
 */
static char **daemon_env(struct xsim_hub *h, struct xsim_daemon *dm, const char *notify,
			 char **pid_digits)
{
	size_t n = 0, j = 0, names = 16;
	char **env, *fdnames;
	bool ok = true;

	while (environ[n])
		n++;
	for (unsigned i = 0; i < dm->nstore; i++)
		names += strlen(dm->store[i].name) + 1;
	fdnames = calloc(1, names);
	env = calloc(n + DAEMON_ENV_OWN + 1, sizeof(*env));
	if (!env || !fdnames) {
		free(env);
		free(fdnames);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (!daemon_env_ours(environ[i]))
			env[j++] = environ[i];
	strcpy(fdnames, "LISTEN_FDNAMES=");
	for (unsigned i = 0; i < dm->nstore; i++) {
		strcat(fdnames, dm->store[i].name);
		if (i + 1 < dm->nstore)
			strcat(fdnames, ":");
	}
	if (!notify)
		ok &= (env[j++] = strdup("XSIM_NO_NOTIFY=1")) != NULL;
	else
		ok &= asprintf(&env[j++], "NOTIFY_SOCKET=%s", notify) >= 0;
	ok &= asprintf(&env[j++], "RUNTIME_DIRECTORY=%s", h->dir) >= 0;
	if (dm->kill_at[0])
		ok &= asprintf(&env[j++], "XSIM_KILL_AT=%s", dm->kill_at) >= 0;
	if (dm->nstore) {
		ok &= asprintf(&env[j++], "LISTEN_FDS=%u", dm->nstore) >= 0;
		ok &= asprintf(&env[j++], "LISTEN_PID=%-12s", "") >= 0;
		*pid_digits = ok ? env[j - 1] + strlen("LISTEN_PID=") : NULL;
		env[j++] = fdnames;
	} else {
		free(fdnames);
	}
	if (!ok) {
		daemon_free_env(env);
		return NULL;
	}
	return env;
}

static char **daemon_argv(const char *binary, const char *const *args)
{
	size_t n = 0;
	char **argv;

	while (args && args[n])
		n++;
	argv = calloc(n + 2, sizeof(*argv));
	if (!argv)
		return NULL;
	argv[0] = (char *)binary;
	for (size_t i = 0; i < n; i++)
		argv[i + 1] = (char *)args[i];
	return argv;
}

/* The store's descriptors, moved out of the way of 0..2+nstore (the child dup2s them down). */
#define DAEMON_STORE_HIGH 512

static int daemon_spawn(struct xsim_hub *h, struct xsim_daemon *dm, const char *binary,
			const char *tag, const char *const *args, unsigned flags)
{
	int high[XSIM_STORE_MAX];
	char **argv, **env, *pid_digits = NULL;
	unsigned nhigh = 0;
	int logfd, rc;

	dm->reaped = false;
	dm->status = 0;
	snprintf(dm->log_path, sizeof(dm->log_path), "%s/%s.log", h->dir, tag);
	logfd = open(dm->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	argv = daemon_argv(binary, args);
	env = daemon_env(h, dm, flags & XSIM_DAEMON_NO_NOTIFY ? NULL : dm->notify_path,
			 &pid_digits);
	for (; nhigh < dm->nstore; nhigh++) {
		high[nhigh] = fcntl(dm->store[nhigh].fd, F_DUPFD_CLOEXEC, DAEMON_STORE_HIGH);
		if (high[nhigh] < 0)
			break;
	}
	if (logfd < 0 || !argv || !env || nhigh < dm->nstore) {
		rc = logfd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	/* Everything is prepared before fork: the child of a threaded process only execs. */
	dm->pid = fork();
	if (dm->pid == 0) {
		/*
		 * A test that fails half-way never stops its daemons: they die with the test
		 * process, and their own children (watch mode) share their process group, which
		 * xsim_daemon_stop() kills.
		 */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		setpgid(0, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		/* sd_listen_fds(): the stored descriptors from 3 on, LISTEN_PID ours. */
		for (unsigned i = 0; i < nhigh; i++)
			dup2(high[i], 3 + (int)i);
		if (pid_digits) {
			char digits[16];
			unsigned len = 0;

			for (pid_t p = getpid(); p > 0; p /= 10)
				digits[len++] = (char)('0' + p % 10);
			for (unsigned i = 0; i < len; i++)
				pid_digits[i] = digits[len - 1 - i];
			pid_digits[len] = '\0';
		}
		execve(binary, argv, env);
		_exit(127);
	}
	rc = dm->pid < 0 ? -errno : 0;
	dm->kill_at[0] = '\0';   /* one instance only: systemd's restart has no kill point */
out:
	for (unsigned i = 0; i < nhigh; i++)
		close(high[i]);
	if (logfd >= 0)
		close(logfd);
	free(argv);
	if (env)
		daemon_free_env(env);
	return rc;
}

int xsim_daemon_start(struct xsim_hub *h, struct xsim_daemon *dm, const char *binary,
		      const char *tag, const char *const *args, unsigned flags)
{
	return xsim_daemon_start_at(h, dm, binary, tag, args, flags, NULL);
}

int xsim_daemon_start_at(struct xsim_hub *h, struct xsim_daemon *dm, const char *binary,
			 const char *tag, const char *const *args, unsigned flags,
			 const char *kill_at)
{
	int rc;

	memset(dm, 0, sizeof(*dm));
	dm->notify_fd = -1;
	if (kill_at)
		snprintf(dm->kill_at, sizeof(dm->kill_at), "%s", kill_at);
	rc = daemon_notify_socket(h, dm, tag);
	if (rc < 0)
		return rc;
	return daemon_spawn(h, dm, binary, tag, args, flags);
}

/* FDNAME=x in a notify message (n bytes), into name; false when absent. */
static bool daemon_fdname(const char *msg, char *name, size_t len)
{
	const char *p = strstr(msg, "FDNAME=");
	size_t n;

	if (!p || (p != msg && p[-1] != '\n'))
		return false;
	p += 7;
	n = strcspn(p, "\n");
	if (n == 0 || n >= len)
		return false;
	memcpy(name, p, n);
	name[n] = '\0';
	return true;
}

static void daemon_store_remove(struct xsim_daemon *dm, const char *name)
{
	for (unsigned i = 0; i < dm->nstore;) {
		if (strcmp(dm->store[i].name, name) != 0) {
			i++;
			continue;
		}
		close(dm->store[i].fd);
		dm->store[i] = dm->store[--dm->nstore];
	}
}

/* One notify message, with the descriptors it carried (kept in the store, or closed). */
static void daemon_notify_msg(struct xsim_daemon *dm, char *msg, int *fds, unsigned nfds)
{
	char name[256] = "stored";

	daemon_fdname(msg, name, sizeof(name));
	if (strstr(msg, "READY=1"))
		dm->ready++;
	if (strstr(msg, "FDSTOREREMOVE=1"))
		daemon_store_remove(dm, name);
	for (unsigned i = 0; i < nfds; i++) {
		if (!strstr(msg, "FDSTORE=1") || dm->nstore >= XSIM_STORE_MAX) {
			dm->store_refused += strstr(msg, "FDSTORE=1") != NULL;
			close(fds[i]);
			continue;
		}
		dm->store[dm->nstore].fd = fds[i];
		snprintf(dm->store[dm->nstore].name, sizeof(dm->store[0].name), "%s", name);
		dm->nstore++;
	}
}

/* Read every message waiting (up to timeout_ms for the first); how many were read. */
static unsigned daemon_pump(struct xsim_daemon *dm, int timeout_ms)
{
	unsigned n = 0;

	while (dm->notify_fd >= 0) {
		struct pollfd p = { .fd = dm->notify_fd, .events = POLLIN };
		char buf[4096], ctl[CMSG_SPACE(sizeof(int) * 16)];
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				     .msg_controllen = sizeof(ctl) };
		int fds[16];
		unsigned nfds = 0;
		ssize_t len;

		if (poll(&p, 1, n ? 0 : timeout_ms) <= 0)
			break;
		len = recvmsg(dm->notify_fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (len < 0)
			break;
		buf[len] = '\0';
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
				if (nfds < 16)
					memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int),
					       sizeof(int));
		}
		daemon_notify_msg(dm, buf, fds, nfds);
		n++;
	}
	return n;
}

unsigned xsim_daemon_store_count(struct xsim_daemon *dm)
{
	daemon_pump(dm, 0);
	return dm->nstore;
}

/*
 * Has the daemon exited? Records its wait status but leaves the zombie in place (WNOWAIT): while
 * it is unreaped its pid, and so its process group id, cannot be reused, which makes the
 * group kill in xsim_daemon_stop() safe.
 */
static bool daemon_exited(struct xsim_daemon *dm, bool block)
{
	siginfo_t si = { .si_pid = 0 };

	if (dm->reaped)
		return true;
	if (dm->pid <= 0 ||
	    waitid(P_PID, (id_t)dm->pid, &si, WEXITED | WNOWAIT | (block ? 0 : WNOHANG)) < 0 ||
	    si.si_pid != dm->pid)
		return false;
	dm->reaped = true;
	if (si.si_code == CLD_EXITED)
		dm->status = (si.si_status & 0xff) << 8;
	else
		dm->status = (si.si_status & 0x7f) | (si.si_code == CLD_DUMPED ? 0x80 : 0);
	return true;
}

bool xsim_daemon_alive(struct xsim_daemon *dm)
{
	return dm->pid > 0 && !daemon_exited(dm, false);
}

int xsim_daemon_wait_ready(struct xsim_daemon *dm, int timeout_ms)
{
	int64_t deadline = guest_now_ms() + timeout_ms;

	while (guest_now_ms() < deadline) {
		if (dm->ready)
			return 0;
		if (daemon_pump(dm, 50) == 0 && !xsim_daemon_alive(dm))
			return -ECHILD;
	}
	return dm->ready ? 0 : -ETIMEDOUT;
}

int xsim_daemon_wait_exit(struct xsim_daemon *dm, int timeout_ms, int *status)
{
	int64_t deadline = guest_now_ms() + timeout_ms;

	while (!daemon_exited(dm, false)) {
		if (guest_now_ms() >= deadline)
			return -ETIMEDOUT;
		/* Read what it notifies meanwhile, as systemd does: a full socket holds its stop. */
		if (dm->notify_fd >= 0)
			daemon_pump(dm, 5);
		else
			usleep(5000);
	}
	if (status)
		*status = dm->status;
	return 0;
}

static void daemon_terminate(struct xsim_daemon *dm)
{
	if (!daemon_exited(dm, false)) {
		kill(dm->pid, SIGTERM);
		if (xsim_daemon_wait_exit(dm, 5000, NULL) < 0) {
			kill(dm->pid, SIGKILL);
			daemon_exited(dm, true);
		}
	}
	/* Anything the daemon left behind in its process group (watch-mode instances). */
	kill(-dm->pid, SIGKILL);
	waitpid(dm->pid, NULL, 0);
	dm->pid = -1;
}

int xsim_daemon_restart(struct xsim_hub *h, struct xsim_daemon *dm, const char *binary,
			const char *tag, const char *const *args, unsigned flags)
{
	if (dm->pid > 0) {
		daemon_exited(dm, true);
		kill(-dm->pid, SIGKILL);
		waitpid(dm->pid, NULL, 0);
		dm->pid = -1;
	}
	/* What it sent before it died (a crash loses nothing already sent). */
	daemon_pump(dm, 0);
	dm->ready = 0;
	return daemon_spawn(h, dm, binary, tag, args, flags);
}

void xsim_daemon_dump_log(const struct xsim_daemon *dm, const char *prefix)
{
	char line[1024];
	FILE *f = fopen(dm->log_path, "r");

	while (f && fgets(line, sizeof(line), f))
		fprintf(stderr, "%s%s", prefix, line);
	if (f)
		fclose(f);
}

int xsim_daemon_stop(struct xsim_daemon *dm)
{
	if (dm->pid > 0)
		daemon_terminate(dm);
	/* systemctl stop: the store goes with the service. */
	daemon_pump(dm, 0);
	while (dm->nstore)
		close(dm->store[--dm->nstore].fd);
	if (dm->notify_fd >= 0) {
		close(dm->notify_fd);
		unlink(dm->notify_path);
		dm->notify_fd = -1;
	}
	return dm->status;
}

bool xsim_daemon_log_has(struct xsim_daemon *dm, const char *needle)
{
	FILE *f = fopen(dm->log_path, "r");
	char line[1024];
	bool found = false;

	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return found;
}

bool xsim_daemon_wait_log(struct xsim_daemon *dm, const char *needle, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		if (xsim_daemon_log_has(dm, needle))
			return true;
		usleep(20000);
	}
	return xsim_daemon_log_has(dm, needle);
}

/* The stats lines of the daemon's log so far; *v: key's value in the last one (-1 if none). */
static int daemon_stats_lines(struct xsim_daemon *dm, const char *needle, long long *v)
{
	char line[2048];
	FILE *f = fopen(dm->log_path, "r");
	int n = 0;

	*v = -1;
	while (f && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "stats vcpus=");

		if (!p)
			continue;
		n++;
		*v = (p = strstr(p, needle)) ? strtoll(p + strlen(needle), NULL, 10) : -1;
	}
	if (f)
		fclose(f);
	return n;
}

long long xsim_daemon_stat(struct xsim_daemon *dm, const char *key, int timeout_ms)
{
	char needle[64];
	long long v;
	int before;

	snprintf(needle, sizeof(needle), " %s=", key);
	before = daemon_stats_lines(dm, needle, &v);
	kill(dm->pid, SIGUSR1);
	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		if (daemon_stats_lines(dm, needle, &v) > before)
			return v;
		usleep(10000);
	}
	return -1;
}

/* ---- vdriver adapters ---- */

static struct xsim_vio *vio_of(struct vdrv_io *io)
{
	return (struct xsim_vio *)((char *)io - offsetof(struct xsim_vio, io));
}

/* A failed access: counted, and said (a test that sees errors then says which). */
static void vio_error(struct xsim_vio *v, const char *what, uint32_t off, int rc)
{
	v->errors++;
	fprintf(stderr, "xsim: vCPU %u: %s of register 0x%03x in window 0x%llx failed: %s\n",
		v->vcpu, what, off, (unsigned long long)v->base, strerror(-rc));
}

static uint64_t vio_read(struct vdrv_io *io, uint32_t off, unsigned size)
{
	struct xsim_vio *v = vio_of(io);
	uint64_t val = 0;

	int rc = xsim_mmio(v->d, v->vcpu, v->base + off, size, false, &val, v->timeout_ms);

	if (rc < 0) {
		vio_error(v, "read", off, rc);
		return size < 8 ? (UINT64_C(1) << (8 * size)) - 1 : ~UINT64_C(0);
	}
	return val;
}

static void vio_write(struct vdrv_io *io, uint32_t off, unsigned size, uint64_t val)
{
	struct xsim_vio *v = vio_of(io);

	int rc = xsim_mmio(v->d, v->vcpu, v->base + off, size, true, &val, v->timeout_ms);

	if (rc < 0)
		vio_error(v, "write", off, rc);
}

static int vio_wait_irq(struct vdrv_io *io, int timeout_ms)
{
	struct xsim_vio *v = vio_of(io);

	return xsim_irq_wait(v->d, v->spi, &v->seen, timeout_ms);
}

void xsim_vio_init(struct xsim_vio *v, struct xsim_dom *d, unsigned vcpu, uint64_t base,
		   unsigned spi)
{
	memset(v, 0, sizeof(*v));
	v->io.read = vio_read;
	v->io.write = vio_write;
	v->io.wait_irq = vio_wait_irq;
	v->io.opaque = v;
	v->d = d;
	v->vcpu = vcpu;
	v->base = base;
	v->spi = spi;
	v->seen = xsim_irq_edges(d, spi);
	v->timeout_ms = GUEST_TIMEOUT_MS;
}

/* Grant addresses for the pre-granted region: page i has refs rw_base+i and ro_base+i. */
static uint64_t vmem_dma_addr(struct vdrv_mem *m, uint64_t gpa, uint64_t len, bool device_writes)
{
	struct xsim_dom *d = m->opaque;
	uint64_t page = (gpa - d->gnt_gpa) / XSIM_PAGE;
	uint32_t base = device_writes ? d->gnt_rw_base : d->gnt_ro_base;

	(void)len;
	if (gpa < d->gnt_gpa || page >= d->gnt_pages)
		return gpa;   /* not granted: the device will (rightly) fail to map it */
	return GMEM_GRANT_BIT | ((base + page) << 12) | (gpa & (XSIM_PAGE - 1));
}

static int vmem_grant_region(struct xsim_dom *d, uint64_t gpa, uint64_t size)
{
	uint64_t pages = (size + XSIM_PAGE - 1) / XSIM_PAGE;
	uint32_t rw = guest_grefs(d, pages), ro = rw ? guest_grefs(d, pages) : 0;

	if (!rw || !ro)
		return -ENOSPC;
	for (uint64_t i = 0; i < pages; i++) {
		xsim_grant(d, rw + (uint32_t)i, gpa / XSIM_PAGE + i, false);
		xsim_grant(d, ro + (uint32_t)i, gpa / XSIM_PAGE + i, true);
	}
	d->gnt_gpa = gpa;
	d->gnt_pages = pages;
	d->gnt_rw_base = rw;
	d->gnt_ro_base = ro;
	return 0;
}

int xsim_vmem_init(struct vdrv_mem *m, struct xsim_dom *d, uint64_t gpa, uint64_t size,
		   bool grants)
{
	memset(m, 0, sizeof(*m));
	if (gpa % XSIM_PAGE)
		return -EINVAL;
	m->host = xsim_dom_ram(d, gpa, size);
	if (!m->host)
		return -EINVAL;
	m->gpa = gpa;
	m->size = size;
	m->opaque = d;
	if (grants) {
		int rc = vmem_grant_region(d, gpa, size);

		if (rc < 0)
			return rc;
		m->dma_addr = vmem_dma_addr;
	}
	return 0;
}

unsigned xsim_dom_restricted(struct xsim_dom *d)
{
	return atomic_load(&d->ctl->restricted);
}

void xsim_dom_dump(struct xsim_dom *d, FILE *f)
{
	pthread_mutex_lock(&d->hub->lock);
	for (unsigned i = 0; i < XSIM_MAX_SERVERS; i++) {
		struct xsim_server *s = d->servers[i];

		if (!s)
			continue;
		fprintf(f, "xsim: d%u server %u %s, %u ioeventfds, ranges:", d->domid, i,
			s->enabled ? "on" : "off", s->kfds);
		for (unsigned r = 0; r < s->nranges; r++)
			fprintf(f, " %#llx-%#llx", (unsigned long long)s->ranges[r].start,
				(unsigned long long)s->ranges[r].end);
		fprintf(f, "\n");
		for (unsigned v = 0; v < s->nchans; v++)
			fprintf(f, "xsim:   vCPU %u: state %u, port %u %s\n", v,
				guest_state(&s->slots[v]), s->chans[v].port,
				s->chans[v].evh ? "bound" : "unbound");
	}
	pthread_mutex_unlock(&d->hub->lock);
}
