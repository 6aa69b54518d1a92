/*
 * The one module that writes state which must outlive the process: a file per guest,
 * <dir>/<guest>.state (default /run/xen-virtiod: tmpfs, it survives the process, not the host),
 * mapped shared, whose regions the layers keep their state in directly (lib/persist.h):
 *   "xen"              ioreq/server.c: ioreq servers, ports, routing, fast path registrations
 *   "<dev>/mmio"       devices/virtio_mmio.c: the transport's registers
 *   "<dev>/vqN"        devices/virtqueue.c: each queue's indexes and heads in flight
 *   "<dev>/<what>"     a device's own state the guest can observe (vdev_persist())
 * Each writer documents the order of its writes; this module writes only the file's header.
 *
 * Format (STATE_VERSION): a header (magic, version, file size, the domain's id and handle, the
 * guest's name, a hash of the device plan and of the record layouts, a directory of regions),
 * then the regions. A new instance adopts the file only when all of these match and the
 * previous instance had finished starting (`ready`); anything else (another version, another
 * domain with a reused id, a changed configuration) is said in the log and started afresh.
 */
#ifndef XVD_STATE_H
#define XVD_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/persist.h"

#define STATE_DEFAULT_DIR "/run/xen-virtiod"

struct state;

struct state_id {
	const char *dir;          /* where the file lives */
	const char *guest;        /* the guest's name: the file is <dir>/<guest>.state */
	uint32_t domid;
	const char *handle;       /* the domain's handle (/local/domain/<id>/vm): "" when unknown */
	uint64_t plan;            /* a hash of what is being served (state_hash()) */
};

/*
 * Open the guest's state: the previous instance's when it matches id (then
 * state_adopting()), else a new file; *out NULL (logged) when the directory cannot hold one:
 * the daemon then runs without (no restart can take it over). Returns 0, or -EBUSY (logged)
 * when another instance holds the file: it serves this guest already.
 */
int state_open(const struct state_id *id, struct state **out);

/* The regions, for the layers (lib/persist.h). */
struct persist *state_persist(struct state *st);

/* The file is a previous instance's and its regions are handed out as they were. */
bool state_adopting(const struct state *st);

/*
 * The Xen side did not take the previous instance's servers over: no other region is adopted
 * either (they are handed out zeroed).
 */
void state_forget(struct state *st);

/* Serving: a crash from here on is taken over by the next instance. */
void state_ready(struct state *st);

/* Let go of the file, keeping it (the next instance takes over) or removing it. */
void state_close(struct state *st, bool remove);

/* FNV-1a over buf, continuing from h (start with STATE_HASH_INIT). */
#define STATE_HASH_INIT UINT64_C(0xcbf29ce484222325)
uint64_t state_hash(uint64_t h, const void *buf, size_t len);

/*
 * Remove <dir>/<guest>.state files whose domain is gone or is another one now (its handle
 * differs): domains that died while no instance ran. Returns how many were removed.
 */
unsigned state_sweep(const char *dir, bool (*alive)(uint32_t domid, const char *handle));

#endif
