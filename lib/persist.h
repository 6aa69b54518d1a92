/*
 * Memory that outlives the process (crash recovery, restarts; daemon/state.c keeps it in a file
 * under /run): a layer that has state a new instance needs asks for a named region and keeps
 * that state there, instead of in ordinary memory, so that a crash at any instruction leaves
 * what was last written. Each user documents the order of its writes. Includes nothing of ours.
 */
#ifndef XVD_PERSIST_H
#define XVD_PERSIST_H

#include <stdbool.h>
#include <stddef.h>

struct persist {
	/*
	 * The region `name` of `size` bytes: zeroed when new; when the process adopts a previous
	 * instance's state, that instance's region (*adopted set). NULL when there is no room or a
	 * region of that name has another size (then nothing can be adopted).
	 */
	void *(*region)(struct persist *p, const char *name, size_t size, bool *adopted);
	/*
	 * The previous instance's region `name` of `size` bytes, read-only, when its state was this
	 * domain's but could not be taken over (another configuration, a start it never
	 * finished): what that instance left behind outside the process can still be undone.
	 * NULL otherwise. Valid until the state is ready (serving starts).
	 */
	const void *(*previous)(struct persist *p, const char *name, size_t size);
};

/*
 * Descriptors that outlive the process (systemd's file descriptor store, FileDescriptorStoreMax=:
 * kept while the service restarts, given back to the next instance): the kernel objects whose
 * identity is the open file, such as an event channel handle with its bindings or an eventfd
 * the dom0 kernel holds.
 */
struct fdstore {
	/* The descriptor stored as `name` for this instance (now the caller's), or -1. */
	int (*take)(struct fdstore *st, const char *name);
	/*
	 * Store a copy of fd as `name` (replacing one of that name); false when it cannot. fd < 0
	 * only removes the one of that name (a client that left must not come back).
	 */
	bool (*keep)(struct fdstore *st, const char *name, int fd);
};

static inline int fdstore_take(struct fdstore *st, const char *name)
{
	return st ? st->take(st, name) : -1;
}

static inline bool fdstore_keep(struct fdstore *st, const char *name, int fd)
{
	return st && st->keep(st, name, fd);
}

static inline const void *persist_previous(struct persist *p, const char *name, size_t size)
{
	return p && p->previous ? p->previous(p, name, size) : NULL;
}

/* The region from p, or NULL when p is NULL (no persistence: the caller allocates). */
static inline void *persist_region(struct persist *p, const char *name, size_t size,
				   bool *adopted)
{
	*adopted = false;
	return p ? p->region(p, name, size, adopted) : NULL;
}

#endif
