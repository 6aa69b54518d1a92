/*
 * ioreq/slot.c against Linux's ioeventfd handler on one slot, as three threads in one process,
 * built with ThreadSanitizer (ioreq/ioreq.mk): "Xen" posts requests as a vCPU would and checks
 * what wait_for_io() checks, "the kernel" runs privcmd's handler steps (tests/xensim/
 * kernel_handler.h) on every delivery, "the daemon" runs slot_take()/slot_answer() on every
 * delivery and unmasks. A delivery goes to both, once, and the port stays masked until the
 * daemon unmasks it (late EOI): the event channel's rule. The threads yield at random between
 * steps. Each request must be answered exactly once; TSan must find no data race.
 */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "ioreq/slot.h"
#include "tests/xensim/kernel_handler.h"

#define BASE     UINT64_C(0x02000000)
#define REQUESTS 40000u

/* The port: masked (delivered, not unmasked yet) and pending (fired again while masked). */
#define P_MASKED  1u
#define P_PENDING 2u

struct rig {
	ioreq_t slot;                     /* aligned like a slot in the ioreq page */
	_Atomic unsigned port;
	_Atomic unsigned to_daemon, to_kernel;   /* deliveries not yet taken */
	_Atomic bool stop;
	_Atomic uint64_t claims;          /* the kernel's eventfd */
	_Atomic uint64_t answers;         /* the daemon's IORESP_READY */
	_Atomic uint64_t notified;        /* answers the vCPU was notified of */
	uint64_t bad_state, backwards, kicks, reads, unanswered;
	struct slot_stats st;
	unsigned seed_k, seed_d;
};

static void maybe_yield(unsigned *seed)
{
	if (rand_r(seed) % 3 == 0)
		sched_yield();
}

static void deliver(struct rig *r)
{
	atomic_fetch_add(&r->to_daemon, 1);
	atomic_fetch_add(&r->to_kernel, 1);
}

/* Xen signals the port: delivered once if unmasked, remembered if masked. */
static void fire(struct rig *r)
{
	unsigned old = atomic_load(&r->port), new;

	do
		new = old & P_MASKED ? old | P_PENDING : old | P_MASKED;
	while (!atomic_compare_exchange_weak(&r->port, &old, new));
	if (!(old & P_MASKED))
		deliver(r);
}

/* The daemon's unmask: a port that fired meanwhile is delivered again (and stays masked). */
static void unmask(struct rig *r)
{
	unsigned old = atomic_load(&r->port), new;

	do
		new = old & P_PENDING ? P_MASKED : 0;
	while (!atomic_compare_exchange_weak(&r->port, &old, new));
	if (old & P_PENDING)
		deliver(r);
}

/* Take one delivery: 1; none yet: 0 (after a yield); none and stopping: -1. */
static int take(_Atomic unsigned *n, struct rig *r)
{
	unsigned v = atomic_load(n);

	while (v && !atomic_compare_exchange_weak(n, &v, v - 1))
		;
	if (v)
		return 1;
	if (atomic_load(&r->stop))
		return -1;
	sched_yield();
	return 0;
}

static void *kernel_thread(void *arg)
{
	struct rig *r = arg;
	volatile struct ioreq *s = &r->slot;

	for (int t; (t = take(&r->to_kernel, r)) >= 0;) {
		bool match;

		if (!t || !kh_check(s))
			continue;
		maybe_yield(&r->seed_k);
		kh_set_state(s, STATE_IOREQ_INPROCESS);
		maybe_yield(&r->seed_k);
		match = kh_matches(s, BASE, 4, 0);
		if (match)
			atomic_fetch_add(&r->claims, 1);
		maybe_yield(&r->seed_k);
		kh_set_state(s, match ? STATE_IORESP_READY : STATE_IOREQ_READY);
		if (match)
			atomic_fetch_add(&r->notified, 1);
	}
	return NULL;
}

static const struct slot_kfd kfd[] = { { BASE, 1 } };
static const struct slot_kernel kernel = { kfd, 1 };

/* The daemon's look at the slot; true when settled (the port may be unmasked). */
static bool daemon_look(struct rig *r, ioreq_t *held, bool *holding)
{
	ioreq_t req;

	if (*holding) {
		enum slot_answer a = slot_answer_again(&r->slot, &kernel, held, &r->st);

		if (a == SLOT_HELD)
			return false;
		*holding = false;
		if (a == SLOT_ANSWERED) {
			atomic_fetch_add(&r->answers, 1);
			atomic_fetch_add(&r->notified, 1);
		}
		return true;
	}
	switch (slot_take(&r->slot, &kernel, &req, &r->st)) {
	case SLOT_NOTHING:
	case SLOT_KERNEL:
		return true;
	case SLOT_BUSY:
		return false;
	case SLOT_OURS:
		break;
	}
	maybe_yield(&r->seed_d);
	switch (slot_answer(&r->slot, &kernel, &req, 0x5a5a, &r->st)) {
	case SLOT_ANSWERED:
		atomic_fetch_add(&r->answers, 1);
		atomic_fetch_add(&r->notified, 1);
		return true;
	case SLOT_LOST:
		return true;
	case SLOT_HELD:
		*held = req;
		*holding = true;
		return false;
	}
	return true;
}

static void *daemon_thread(void *arg)
{
	struct rig *r = arg;
	ioreq_t held;
	bool holding = false;

	for (int t; (t = take(&r->to_daemon, r)) >= 0;) {
		if (!t)
			continue;
		while (!daemon_look(r, &held, &holding))
			sched_yield();   /* the kernel holds the slot: look again (port masked) */
		unmask(r);
	}
	return NULL;
}

/* The vCPU: post, then wait as wait_for_io() does (the state never goes back), consume. */
static void vcpu(struct rig *r, unsigned seed)
{
	volatile char *p = (volatile char *)&r->slot;

	for (unsigned i = 0; i < REQUESTS; i++) {
		bool kick = rand_r(&seed) % 3 != 0;
		uint8_t bits = (uint8_t)(STATE_IOREQ_READY | (kick ? IOREQ_WRITE : IOREQ_READ) << 5);
		unsigned prev = STATE_IOREQ_READY, st;
		uint64_t spins = 0;

		if ((__atomic_load_n(p + 30, __ATOMIC_ACQUIRE) & 0x0f) != STATE_IOREQ_NONE)
			r->bad_state++;
		__atomic_store_n((volatile uint64_t *)p, BASE + 0x50, __ATOMIC_RELAXED);
		__atomic_store_n((volatile uint64_t *)(p + 8), 0, __ATOMIC_RELAXED);
		__atomic_store_n((volatile uint32_t *)(p + 16), 1, __ATOMIC_RELAXED);
		__atomic_store_n((volatile uint32_t *)(p + 20), 4, __ATOMIC_RELAXED);
		__atomic_store_n((volatile uint8_t *)(p + 31), IOREQ_TYPE_COPY, __ATOMIC_RELAXED);
		__atomic_store_n((volatile uint8_t *)(p + 30), bits, __ATOMIC_RELEASE);
		fire(r);
		r->kicks += kick;
		r->reads += !kick;
		while ((st = __atomic_load_n(p + 30, __ATOMIC_ACQUIRE) & 0x0f) != STATE_IORESP_READY) {
			if (st < prev)
				r->backwards++;
			prev = st;
			if (++spins > 200000000u) {
				r->unanswered++;
				break;
			}
			sched_yield();
		}
		if (!kick && __atomic_load_n((volatile uint64_t *)(p + 8), __ATOMIC_RELAXED) != 0x5a5a)
			r->unanswered++;
		/* Consumed: Xen frees the slot. */
		__atomic_store_n((volatile uint8_t *)(p + 30),
				 (uint8_t)(__atomic_load_n(p + 30, __ATOMIC_RELAXED) & ~0x0fu),
				 __ATOMIC_RELEASE);
	}
}

static void test_three_parties(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	pthread_t k, d;

	(void)state;
	assert_non_null(r);
	r->seed_k = 7;
	r->seed_d = 11;
	assert_int_equal(pthread_create(&k, NULL, kernel_thread, r), 0);
	assert_int_equal(pthread_create(&d, NULL, daemon_thread, r), 0);
	vcpu(r, 3);
	atomic_store(&r->stop, true);
	pthread_join(k, NULL);
	pthread_join(d, NULL);
	print_message("[  NOTE    ] %llu kicks claimed by the kernel, %llu reads answered by the "
		      "daemon; kicks left %llu, slot held %llu (past the spin %llu), unstable "
		      "copies %llu, answers held %llu\n",
		      (unsigned long long)r->claims, (unsigned long long)r->answers,
		      (unsigned long long)r->st.kernel_left, (unsigned long long)r->st.kernel_waits,
		      (unsigned long long)r->st.kernel_busy, (unsigned long long)r->st.unstable,
		      (unsigned long long)r->st.held);
	assert_int_equal(r->bad_state, 0);
	assert_int_equal(r->backwards, 0);
	assert_int_equal(r->unanswered, 0);
	assert_int_equal(r->claims, r->kicks);
	assert_int_equal(r->answers, r->reads);
	assert_int_equal(r->st.lost, 0);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_three_parties),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
