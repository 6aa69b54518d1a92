/*
 * Guest memory in a plain buffer, implementing ioreq/gmem.h for tests and fuzzing.
 *
 * One buffer backs [base, base+size). Page-granular (4 KiB) attributes punch holes (not guest
 * RAM: every map touching one fails) and make pages read-only (maps asking GMEM_WRITE fail).
 * A tiny grant table maps grant references to guest pages, so grant addresses (bit 63) can be
 * tested; without an entry a grant address is rejected. Counters let tests assert that every
 * successful map was unmapped.
 */
#ifndef XVD_TEST_GMEM_FLAT_H
#define XVD_TEST_GMEM_FLAT_H

#include <stdbool.h>
#include <stdint.h>

#include "ioreq/gmem.h"

#define GMEM_FLAT_PAGE     4096u
#define GMEM_FLAT_GRANTS   64u    /* grant references 0 .. GMEM_FLAT_GRANTS-1 */

/* base and size multiples of GMEM_FLAT_PAGE, size > 0. NULL on bad arguments or no memory. */
struct gmem *gmem_flat_new(uint64_t base, uint64_t size);

/* Host view of guest address gpa (no checks beyond "inside the buffer"); NULL outside. */
void *gmem_flat_host(struct gmem *gm, uint64_t gpa);

/* Mark the pages overlapping [gpa, gpa+len) as a hole / read-only / ordinary RAM again. */
void gmem_flat_add_hole(struct gmem *gm, uint64_t gpa, uint64_t len);
void gmem_flat_set_readonly(struct gmem *gm, uint64_t gpa, uint64_t len);
void gmem_flat_set_ram(struct gmem *gm, uint64_t gpa, uint64_t len);

/* Grant reference ref to the guest page at gpa (page aligned); readonly: the device may only read. */
int gmem_flat_grant(struct gmem *gm, uint32_t ref, uint64_t gpa, bool readonly);
void gmem_flat_ungrant(struct gmem *gm, uint32_t ref);

/*
 * Called after every successful map, before the pointer is returned: a test or fuzz target
 * plays the guest changing its memory while the device is in the middle of reading it.
 */
typedef void (*gmem_flat_hook)(void *opaque, uint64_t gpa, size_t len, unsigned prot);
void gmem_flat_set_map_hook(struct gmem *gm, gmem_flat_hook fn, void *opaque);

/* Successful maps not yet unmapped; unmaps not matching a live map's pointer and length. */
long gmem_flat_outstanding(struct gmem *gm);
unsigned long gmem_flat_bad_unmaps(struct gmem *gm);
/* Calls to map that failed (a test can assert the device tried and was refused). */
unsigned long gmem_flat_failed_maps(struct gmem *gm);

#endif
