/*
 * ioreq/gmem_xen.c in process, against the xensim drop-in libraries: the bucket cache (hits,
 * LRU eviction, referenced buckets kept, stale buckets after invalidate), ranges across buckets,
 * holes and the end of RAM, grant addresses (read-only grants refused for writing), premap of
 * both banks. Each case runs the Xen-side code in a forked child, as the daemon would be.
 * Built by ioreq/ioreq.mk (it links gmem_xen.o and libxensim).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ioreq/gmem_xen.h"
#include "lib/log.h"
#include "tests/xensim/guest.h"

#define RAM0 UINT64_C(0x40000000)
#define RAM1 UINT64_C(0x200000000)
#define MIB  (UINT64_C(1) << 20)

struct env {
	struct xsim_hub *hub;
	struct xsim_dom *dom;
	xenforeignmemory_handle *fm;
	xengnttab_handle *gt;
	struct gmem *gm;
};

/* In the child: a failed check ends it with the line number as its status. */
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); \
			_exit(__LINE__ % 250 + 1); } } while (0)

static struct gmem_xen_stats stats(struct env *e)
{
	struct gmem_xen_stats st;

	gmem_xen_get_stats(e->gm, &st);
	return st;
}

static void child_open(struct env *e, uint32_t cache_mib, bool premap)
{
	e->fm = xenforeignmemory_open(NULL, 0);
	e->gt = xengnttab_open(NULL, 0);
	CHECK(e->fm && e->gt);
	e->gm = gmem_xen_create(e->fm, e->gt, xsim_dom_id(e->dom), cache_mib, premap);
	CHECK(e->gm);
}

static void child_close(struct env *e)
{
	gmem_destroy(e->gm);
	xengnttab_close(e->gt);
	xenforeignmemory_close(e->fm);
}

/* Run body(e) in a child against a fresh domain; the test fails unless it exits 0. */
static void run(void (*body)(struct env *e), uint64_t ram1_mib)
{
	struct xsim_dom_opts o = { .name = "g", .nr_vcpus = 1, .ram_mib = 64, .ram1_mib = ram1_mib };
	struct env e = { 0 };
	int status = -1;
	pid_t pid;

	e.hub = xsim_hub_start();
	assert_non_null(e.hub);
	e.dom = xsim_dom_create(e.hub, &o);
	assert_non_null(e.dom);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		body(&e);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	xsim_hub_stop(e.hub);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void body_cache(struct env *e)
{
	char *g = xsim_dom_ram(e->dom, RAM0 + 0x100, 16);
	uint8_t *a, *b, *c, *d, *x;

	child_open(e, 4, false);   /* two buckets */
	strcpy(g, "hello");
	a = gmem_map(e->gm, RAM0 + 0x100, 16, GMEM_WRITE);
	CHECK(a && strcmp((char *)a, "hello") == 0);
	strcpy((char *)a, "world");
	CHECK(strcmp(g, "world") == 0);            /* the guest sees what the device writes */
	b = gmem_map(e->gm, RAM0 + 0x100, 6, GMEM_READ);
	CHECK(b == a);
	CHECK(stats(e).bucket_maps == 1 && stats(e).cache_hits == 1);
	/* A second bucket, then a third while both are referenced: served uncached. */
	c = gmem_map(e->gm, RAM0 + 4 * MIB, 8, GMEM_READ);
	CHECK(c && stats(e).buckets == 2);
	d = gmem_map(e->gm, RAM0 + 6 * MIB, 8, GMEM_READ);
	CHECK(d && stats(e).buckets == 2 && stats(e).temp_maps == 1);
	gmem_unmap(e->gm, d, 8);
	gmem_unmap(e->gm, c, 8);
	/* Now the 4 MiB bucket is free and least recent: it is the one evicted. */
	x = gmem_map(e->gm, RAM0 + 8 * MIB, 8, GMEM_READ);
	CHECK(x && stats(e).evictions == 1 && stats(e).buckets == 2);
	gmem_unmap(e->gm, x, 8);
	CHECK(gmem_map(e->gm, RAM0 + 0x100, 1, GMEM_READ) == a);   /* bucket 0 survived */
	gmem_unmap(e->gm, a, 1);
	/* Invalidate: the referenced bucket turns stale, the pointers stay valid. */
	gmem_invalidate(e->gm);
	CHECK(stats(e).buckets == 1 && strcmp((char *)a, "world") == 0);
	x = gmem_map(e->gm, RAM0 + 0x100, 6, GMEM_READ);
	CHECK(x && x != a && strcmp((char *)x, "world") == 0 && stats(e).buckets == 2);
	gmem_unmap(e->gm, a, 16);
	gmem_unmap(e->gm, b, 6);
	CHECK(stats(e).buckets == 1);              /* the stale one went on its last unmap */
	gmem_unmap(e->gm, x, 6);
	child_close(e);
}

static void body_edges(struct env *e)
{
	uint8_t *p;

	child_open(e, 64, false);
	/* Across a bucket boundary: one mapping of its own, contiguous. */
	memset(xsim_dom_ram(e->dom, RAM0 + 2 * MIB - 4, 8), 0x5a, 8);
	p = gmem_map(e->gm, RAM0 + 2 * MIB - 4, 8, GMEM_READ);
	CHECK(p && p[0] == 0x5a && p[7] == 0x5a && stats(e).temp_maps == 1);
	gmem_unmap(e->gm, p, 8);
	/* Holes, the end of RAM, wrap-around, empty and oversized ranges. */
	CHECK(!gmem_map(e->gm, 0x1000, 4, GMEM_READ));
	CHECK(!gmem_map(e->gm, RAM0 - 4, 8, GMEM_READ));
	CHECK(!gmem_map(e->gm, RAM0 + 64 * MIB - 4, 8, GMEM_READ));
	CHECK(!gmem_map(e->gm, RAM0 + 64 * MIB, 4, GMEM_READ));
	CHECK(!gmem_map(e->gm, RAM0 + 62 * MIB, 4 * MIB, GMEM_READ));
	CHECK(!gmem_map(e->gm, UINT64_MAX - 3, 8, GMEM_READ));
	CHECK(!gmem_map(e->gm, (GMEM_GRANT_BIT - 1) & ~UINT64_C(0xfff), 8192, GMEM_READ));
	CHECK(!gmem_map(e->gm, RAM0, 0, GMEM_READ));
	CHECK(!gmem_map(e->gm, RAM0, (size_t)GMEM_MAP_MAX + 1, GMEM_READ));
	CHECK(stats(e).failures == 9);
	/* The last page of RAM is fine. */
	p = gmem_map(e->gm, RAM0 + 64 * MIB - 4096, 4096, GMEM_WRITE);
	CHECK(p);
	gmem_unmap(e->gm, p, 4096);
	child_close(e);
}

static void body_grants(struct env *e)
{
	uint64_t rw = xsim_grant_addr(e->dom, RAM0 + 0x3000 + 0x10, 8000, false);
	uint64_t ro = xsim_grant_addr(e->dom, RAM0 + 0x9000, 100, true);
	uint8_t *p;

	CHECK(rw & GMEM_GRANT_BIT && ro & GMEM_GRANT_BIT);
	child_open(e, 64, false);
	strcpy(xsim_dom_ram(e->dom, RAM0 + 0x3010, 8), "grant");
	p = gmem_map(e->gm, rw, 8000, GMEM_WRITE);
	CHECK(p && strcmp((char *)p, "grant") == 0);
	p[7999] = 0x77;
	CHECK(*(uint8_t *)xsim_dom_ram(e->dom, RAM0 + 0x3010 + 7999, 1) == 0x77);
	gmem_unmap(e->gm, p, 8000);
	/* Read-only grants map for reading only. */
	CHECK(!gmem_map(e->gm, ro, 100, GMEM_WRITE));
	p = gmem_map(e->gm, ro, 100, GMEM_READ);
	CHECK(p);
	gmem_unmap(e->gm, p, 100);
	/* Refs never granted, and a buffer running past the granted refs. */
	CHECK(!gmem_map(e->gm, GMEM_GRANT_BIT | (UINT64_C(7000) << 12), 16, GMEM_READ));
	CHECK(!gmem_map(e->gm, ro, 8192, GMEM_READ));
	CHECK(!gmem_map(e->gm, GMEM_GRANT_BIT | (UINT64_C(0xffffffff) << 12), 8192, GMEM_READ));
	CHECK(stats(e).grant_maps == 2);
	child_close(e);
}

static void body_premap(struct env *e)
{
	uint8_t *p;

	child_open(e, 64, true);
	CHECK(stats(e).premapped == 80 * MIB);
	strcpy(xsim_dom_ram(e->dom, RAM1 + 15 * MIB, 8), "bank1");
	p = gmem_map(e->gm, RAM1 + 15 * MIB, 8, GMEM_READ);
	CHECK(p && strcmp((char *)p, "bank1") == 0);
	gmem_unmap(e->gm, p, 8);
	p = gmem_map(e->gm, RAM0 + 2 * MIB - 4, 8, GMEM_READ);   /* across buckets: still premap */
	CHECK(p);
	gmem_unmap(e->gm, p, 8);
	CHECK(!gmem_map(e->gm, RAM1 + 16 * MIB - 4, 8, GMEM_READ));
	gmem_invalidate(e->gm);                                   /* premapped RAM stays */
	CHECK(stats(e).bucket_maps == 0 && stats(e).temp_maps == 0 && stats(e).cache_hits == 2);
	p = gmem_map(e->gm, RAM0, 4, GMEM_READ);
	CHECK(p);
	gmem_unmap(e->gm, p, 4);
	child_close(e);
}

static void test_cache(void **state) { (void)state; run(body_cache, 0); }
static void test_edges(void **state) { (void)state; run(body_edges, 0); }
static void test_grants(void **state) { (void)state; run(body_grants, 0); }
static void test_premap(void **state) { (void)state; run(body_premap, 16); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_grants),
		cmocka_unit_test(test_premap),
	};

	log_init(LOG_WARNING, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
