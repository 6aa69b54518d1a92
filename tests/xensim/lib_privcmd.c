/*
 * The privcmd eventfd seam (ioreq/privcmd.h), simulated: the ioctls go to the hub's model of
 * the dom0 kernel (kernel.c) with the eventfd passed by SCM_RIGHTS. What the real ioctl finds
 * by itself is looked up here: the ioreq page behind the user address (the kernel's find_vma),
 * and the restriction of this handle.
 */
#include <errno.h>
#include <signal.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdint.h>
#include <unistd.h>

#include <xen/hvm/ioreq.h>

#include "ioreq/privcmd.h"
#include "lib/testpoint.h"
#include "tests/xensim/client.h"
#include "tests/xensim/proto.h"

struct xen_privcmd {
	int conn;
	int64_t restrict_domid;   /* -1: unrestricted */
	uint32_t domid;
	struct xsim_domctl *ctl;  /* the domain's control page: where a forced interleaving is */
	struct xen_privcmd *next;
};

/* Every open handle: xen_privcmd_race() finds the control page of a slot's domain here. */
static struct xen_privcmd *privcmd_handles;

/* Map the domain's control page (no descriptor kept); NULL when the domain is gone. */
static struct xsim_domctl *privcmd_map_ctl(int conn, uint32_t domid)
{
	struct xsim_msg *m = xsim_msg_new(XSIM_OP_DOMAIN, domid);
	struct xsim_domctl *ctl = NULL;
	int fds[2] = { -1, -1 };

	if (m && xsim_rpc(conn, m, -1, fds, 2) == 0) {
		ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
		if (ctl == MAP_FAILED)
			ctl = NULL;
	}
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(m);
	return ctl;
}

static struct xsim_domctl *privcmd_ctl(uint32_t domid)
{
	for (struct xen_privcmd *p = privcmd_handles; p; p = p->next)
		if (p->ctl && p->domid == domid)
			return p->ctl;
	return NULL;
}

/* Steps of the kernel's handler the schedule puts at or before point p: they come first. */
static uint32_t privcmd_race_need(const struct xsim_race *r, unsigned p)
{
	uint32_t n = 0;

	while (n < XSIM_RACE_STEPS && r->at[n] <= p)
		n++;
	return n;
}

static int64_t privcmd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void xen_privcmd_race(const volatile void *slot, unsigned point)
{
	uint32_t domid, server, need, have;
	struct xsim_domctl *ctl;
	struct xsim_race *r;
	size_t off;
	int64_t deadline;

	if (!xsim_resource_find((const void *)slot, &domid, &server, &off) ||
	    !(ctl = privcmd_ctl(domid)))
		return;
	r = &ctl->race;
	if (!atomic_load(&r->armed) || r->server != server ||
	    r->vcpu != off / sizeof(struct ioreq))
		return;
	/* The furthest point reached; the kernel's thread waits on it. */
	have = atomic_load(&r->dpoint);
	while (have < point && !atomic_compare_exchange_weak(&r->dpoint, &have, point))
		;
	syscall(SYS_futex, (uint32_t *)&r->dpoint, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	need = privcmd_race_need(r, point);
	deadline = privcmd_now_ms() + XSIM_RACE_WAIT_MS;
	for (;;) {
		uint32_t done = atomic_load(&r->ksteps);
		int64_t left = deadline - privcmd_now_ms();

		if (done >= need || !atomic_load(&r->armed))
			return;
		if (left <= 0) {
			atomic_fetch_add(&r->timeouts, 1);
			return;
		}
		struct timespec ts = { left / 1000, (left % 1000) * 1000000 };

		syscall(SYS_futex, (uint32_t *)&r->ksteps, FUTEX_WAIT, done, &ts, NULL, 0);
	}
}

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
	p->domid = domid;
	p->ctl = privcmd_map_ctl(p->conn, domid);
	p->next = privcmd_handles;
	privcmd_handles = p;
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
	rc = xsim_rpc(p->conn, m, fd, NULL, 0);
	free(m);
	return rc;
}

int xen_privcmd_ioeventfd(struct xen_privcmd *p, const struct xvd_privcmd_ioeventfd *a)
{
	struct xsim_kfd_req k = {
		.flags = a->flags, .server = UINT32_MAX, .addr_len = a->addr_len,
		.vcpus = a->vcpus, .vq = a->vq, .ioreq_va = a->ioreq, .addr = a->addr,
	};
	uint32_t domid;

	/* Assigning finds the page behind the address (find_vma); deassigning only compares it. */
	if (!(a->flags & XVD_PRIVCMD_DEASSIGN) &&
	    (!xsim_resource_find((const void *)(uintptr_t)a->ioreq, &domid, &k.server, NULL) ||
	     domid != a->dom))
		k.server = UINT32_MAX;   /* the hub answers EFAULT (no such mapping) */
	return privcmd_call(p, XSIM_OP_IOEVENTFD, a->dom, &k, (int)a->event_fd);
}

int xen_privcmd_irqfd(struct xen_privcmd *p, const struct xvd_privcmd_irqfd *a)
{
	struct xsim_kfd_req k = {
		.flags = a->flags, .server = UINT32_MAX, .dm_op_size = a->size,
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
	for (struct xen_privcmd **q = &privcmd_handles; *q; q = &(*q)->next) {
		if (*q == p) {
			*q = p->next;
			break;
		}
	}
	if (p->ctl)
		munmap(p->ctl, sizeof(*p->ctl));
	close(p->conn);
	free(p);
}

/* ---- kill and stop points (lib/testpoint.h) ---- */

struct xsim_point {
	const char *env;
	int sig;
	char name[64];
	unsigned long left;     /* passes until the signal; 0: done, or never set */
};

/*
 * XSIM_KILL_AT=<point>:<n>: the n-th pass through <point> ends the process, as SIGKILL does.
 * XSIM_STOP_AT=<point>:<n>: the n-th pass stops it (SIGSTOP) where it is, until the test that
 * started it sends SIGCONT: a test can change guest memory at a known point of a device's turn.
 */
static struct xsim_point xsim_points[] = {
	{ "XSIM_KILL_AT", SIGKILL, "", 0 },
	{ "XSIM_STOP_AT", SIGSTOP, "", 0 },
};

static void xsim_testpoint(const char *point)
{
	for (size_t i = 0; i < sizeof(xsim_points) / sizeof(xsim_points[0]); i++) {
		struct xsim_point *p = &xsim_points[i];

		/* SIGKILL: nothing after this runs, no handler, no flush, no exit path. */
		if (p->left && strcmp(point, p->name) == 0 && --p->left == 0)
			raise(p->sig);
	}
}

/* <point>:<n> from the variable p->env into p; false when unset or malformed. */
static bool xsim_point_parse(struct xsim_point *p)
{
	const char *v = getenv(p->env);
	const char *colon = v ? strrchr(v, ':') : NULL;
	char *end;

	if (!colon || (size_t)(colon - v) >= sizeof(p->name))
		return false;
	p->left = strtoul(colon + 1, &end, 10);
	if (*end || p->left == 0) {
		p->left = 0;
		return false;
	}
	memcpy(p->name, v, (size_t)(colon - v));
	p->name[colon - v] = '\0';
	return true;
}

__attribute__((constructor)) static void xsim_testpoint_init(void)
{
	bool any = false;

	for (size_t i = 0; i < sizeof(xsim_points) / sizeof(xsim_points[0]); i++)
		any |= xsim_point_parse(&xsim_points[i]);
	if (any)
		testpoint_hook = xsim_testpoint;
}
