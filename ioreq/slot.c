/* A vCPU's ioreq slot: the protocol of ioreq/slot.h. */
#include "ioreq/slot.h"

#include <stddef.h>
#include <string.h>

#include "ioreq/privcmd.h"

/*
 * The slot is read and written field by field with atomic accesses: Xen, the kernel and we
 * touch it concurrently, and only its state byte orders the rest. The state is the low nibble
 * of byte 30 (state:4, data_is_ptr:1, dir:1, df:1, _pad1:1 on a little-endian host).
 */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the ioreq state byte layout assumes a little-endian host"
#endif
_Static_assert(sizeof(ioreq_t) == 32, "ioreq_t layout");
_Static_assert(offsetof(ioreq_t, addr) == 0 && offsetof(ioreq_t, data) == 8 &&
	       offsetof(ioreq_t, count) == 16 && offsetof(ioreq_t, size) == 20 &&
	       offsetof(ioreq_t, vp_eport) == 24 && offsetof(ioreq_t, type) == 31,
	       "ioreq_t field offsets");

#define SLOT_BITS_OFF  30u          /* the byte holding state, data_is_ptr, dir, df */
#define SLOT_STATE_MASK 0x0fu
#define SLOT_SPIN      4096u        /* looks at an INPROCESS slot before SLOT_BUSY */
#define SLOT_TRIES     16u          /* looks at a changing slot before SLOT_BUSY */

static volatile uint8_t *slot_bits(const volatile ioreq_t *slot)
{
	return (volatile uint8_t *)slot + SLOT_BITS_OFF;
}

unsigned slot_state(const volatile ioreq_t *slot)
{
	/* Acquire: whoever set the state wrote the fields it covers first (Xen's wmb). */
	return __atomic_load_n(slot_bits(slot), __ATOMIC_ACQUIRE) & SLOT_STATE_MASK;
}

/* One copy of the request, each field read once. */
static void slot_copy(const volatile ioreq_t *slot, ioreq_t *r)
{
	const volatile char *p = (const volatile char *)slot;
	uint8_t raw[32];
	uint64_t a = __atomic_load_n((const volatile uint64_t *)(p + 0), __ATOMIC_RELAXED);
	uint64_t d = __atomic_load_n((const volatile uint64_t *)(p + 8), __ATOMIC_RELAXED);
	uint32_t c = __atomic_load_n((const volatile uint32_t *)(p + 16), __ATOMIC_RELAXED);
	uint32_t s = __atomic_load_n((const volatile uint32_t *)(p + 20), __ATOMIC_RELAXED);
	uint32_t e = __atomic_load_n((const volatile uint32_t *)(p + 24), __ATOMIC_RELAXED);
	uint16_t pad = __atomic_load_n((const volatile uint16_t *)(p + 28), __ATOMIC_RELAXED);
	uint8_t bits = __atomic_load_n((const volatile uint8_t *)(p + 30), __ATOMIC_RELAXED);
	uint8_t type = __atomic_load_n((const volatile uint8_t *)(p + 31), __ATOMIC_RELAXED);

	memcpy(raw + 0, &a, 8);
	memcpy(raw + 8, &d, 8);
	memcpy(raw + 16, &c, 4);
	memcpy(raw + 20, &s, 4);
	memcpy(raw + 24, &e, 4);
	memcpy(raw + 28, &pad, 2);
	raw[30] = bits;
	raw[31] = type;
	memcpy(r, raw, sizeof(raw));
}

static void slot_race(const struct slot_kernel *k, const volatile ioreq_t *slot,
		      enum slot_point p)
{
	if (k)
		xen_privcmd_race((const volatile void *)slot, p);
}

static void slot_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

bool slot_kernel_claims(const struct slot_kernel *k, const ioreq_t *r)
{
	if (!k || r->state != STATE_IOREQ_READY || r->type != IOREQ_TYPE_COPY ||
	    r->dir != IOREQ_WRITE)
		return false;
	for (unsigned i = 0; i < k->n; i++) {
		const struct slot_kfd *f = &k->fds[i];

		if (r->addr == f->base + SLOT_NOTIFY_OFF && r->size == SLOT_NOTIFY_LEN &&
		    (r->data & SLOT_VQ_MASK) < f->nq)
			return true;
	}
	return false;
}

/* The state is INPROCESS: the kernel's handler runs. Wait for it, within bounds. */
static bool slot_wait_kernel(const volatile ioreq_t *slot, const struct slot_kernel *k,
			     struct slot_stats *st)
{
	st->kernel_waits++;
	for (unsigned spin = 0; spin < SLOT_SPIN; spin++) {
		slot_relax();
		slot_race(k, slot, SLOT_AT_STATE);
		if (slot_state(slot) != STATE_IOREQ_INPROCESS)
			return true;
	}
	st->kernel_busy++;
	return false;
}

static enum slot_take slot_done(volatile ioreq_t *slot, const struct slot_kernel *k,
				enum slot_take t)
{
	slot_race(k, slot, SLOT_AT_DONE);
	return t;
}

enum slot_take slot_take(volatile ioreq_t *slot, const struct slot_kernel *k, ioreq_t *req,
			 struct slot_stats *st)
{
	for (unsigned tries = 0; tries < SLOT_TRIES; tries++) {
		unsigned s = slot_state(slot);
		ioreq_t again;

		slot_race(k, slot, SLOT_AT_STATE);
		/* Only the kernel writes INPROCESS, and only where it holds ioeventfds. */
		if (s == STATE_IOREQ_INPROCESS && k) {
			if (!slot_wait_kernel(slot, k, st))
				return slot_done(slot, k, SLOT_BUSY);
			continue;
		}
		if (s != STATE_IOREQ_READY)
			return slot_done(slot, k, SLOT_NOTHING);
		slot_copy(slot, req);
		/* Nobody but Xen writes a slot the kernel does not share, and not while READY. */
		if (!k)
			return req->state == STATE_IOREQ_READY ? SLOT_OURS : SLOT_NOTHING;
		slot_race(k, slot, SLOT_AT_COPY);
		if (req->state != STATE_IOREQ_READY) {
			/* The kernel took it while we copied: look again. */
			st->unstable++;
			continue;
		}
		if (slot_kernel_claims(k, req)) {
			st->kernel_left++;
			return slot_done(slot, k, SLOT_KERNEL);
		}
		/*
		 * The kernel may have answered the request we started copying and Xen posted the
		 * vCPU's next one while we copied: a second copy equal to the first proves it is
		 * one request (the next can only come after this one is answered).
		 */
		slot_copy(slot, &again);
		slot_race(k, slot, SLOT_AT_RECHECK);
		if (memcmp(&again, req, sizeof(again)) == 0)
			return SLOT_OURS;
		st->unstable++;
	}
	st->kernel_busy++;
	return slot_done(slot, k, SLOT_BUSY);
}

/* READY -> IORESP_READY on the state's byte, if it still is the READY byte we copied. */
static bool slot_cas_answer(volatile ioreq_t *slot, const ioreq_t *req)
{
	uint8_t want, to;

	memcpy(&want, (const char *)req + SLOT_BITS_OFF, 1);
	to = (uint8_t)((want & ~SLOT_STATE_MASK) | STATE_IORESP_READY);
	/* Release: the data written before is visible to Xen before the new state. */
	return __atomic_compare_exchange_n(slot_bits(slot), &want, to, false, __ATOMIC_RELEASE,
					   __ATOMIC_RELAXED);
}

/* The CAS failed: a kernel handler holds the slot (it gives it back), or the request is gone. */
static enum slot_answer slot_answer_retry(volatile ioreq_t *slot, const struct slot_kernel *k,
					  const ioreq_t *req, bool wait, struct slot_stats *st)
{
	if (k && slot_state(slot) == STATE_IOREQ_INPROCESS) {
		if (!wait || !slot_wait_kernel(slot, k, st)) {
			st->held += wait;
			return SLOT_HELD;
		}
		if (slot_cas_answer(slot, req))
			return SLOT_ANSWERED;
	}
	st->lost++;
	return SLOT_LOST;
}

enum slot_answer slot_answer(volatile ioreq_t *slot, const struct slot_kernel *k,
			     const ioreq_t *req, uint64_t data, struct slot_stats *st)
{
	enum slot_answer a = SLOT_ANSWERED;

	if (req->dir == IOREQ_READ)
		__atomic_store_n((volatile uint64_t *)((volatile char *)slot + 8), data,
				 __ATOMIC_RELAXED);
	slot_race(k, slot, SLOT_AT_ANSWER);
	/*
	 * Lost on a shared server: the kernel's handler, stopped between its steps 1 and 2, went
	 * on while we served a write its rule does not match. It stores READY again when done.
	 */
	if (!slot_cas_answer(slot, req))
		a = slot_answer_retry(slot, k, req, true, st);
	slot_done(slot, k, SLOT_OURS);
	return a;
}

enum slot_answer slot_answer_again(volatile ioreq_t *slot, const struct slot_kernel *k,
				   const ioreq_t *req, struct slot_stats *st)
{
	enum slot_answer a = SLOT_ANSWERED;

	if (!slot_cas_answer(slot, req))
		a = slot_answer_retry(slot, k, req, false, st);
	slot_done(slot, k, SLOT_OURS);
	return a;
}
