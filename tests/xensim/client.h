/*
 * What the drop-in libraries share: the connection to the hub and the per-handle cache of a
 * domain's shared memory (RAM memfd and control page), fetched once per domain and handle.
 */
#ifndef XSIM_CLIENT_H
#define XSIM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tests/xensim/proto.h"

/* A new connection to the hub named by $XENSIM_SOCKET; -1 with errno. */
int xsim_connect(void);

/*
 * Send m (with send_fd when >= 0), receive the answer into m and up to nfds descriptors into
 * fds (the rest closed). Returns m->rc (0 or -errno) and sets errno on failure.
 */
int xsim_rpc(int conn, struct xsim_msg *m, int send_fd, int *fds, unsigned nfds);
struct xsim_msg *xsim_msg_new(uint32_t op, uint32_t domid);

struct xsim_cdom {
	uint32_t domid;
	int ram_fd;
	struct xsim_domctl *ctl;
};

struct xsim_domcache {
	struct xsim_cdom *v;
	unsigned n;
};

/* The domain's shared memory, asking the hub the first time; NULL with errno (ESRCH). */
struct xsim_cdom *xsim_domcache_get(struct xsim_domcache *dc, int conn, uint32_t domid);
void xsim_domcache_free(struct xsim_domcache *dc);

/* Record in the domain's control page that a handle of kind `bit` was restricted to it. */
void xsim_note_restricted(int conn, uint32_t domid, uint32_t bit);

/*
 * What the privcmd-backed libraries' handles (devicemodel, foreignmemory) share, first in
 * each: the connection to the hub, the domain the handle is restricted to and the domains seen.
 */
struct xsim_pch {
	int conn;
	int64_t restrict_domid;   /* -1: unrestricted */
	struct xsim_domcache dc;
};

/* A zeroed handle of size bytes, its xsim_pch connected; NULL with errno (privcmd faulted). */
void *xsim_pch_open(size_t size);
int xsim_pch_close(struct xsim_pch *h);
/* Restrict to domid (bit: the kind, for xsim_note_restricted); -1 EPERM if restricted elsewhere. */
int xsim_pch_restrict(struct xsim_pch *h, uint32_t domid, uint32_t bit);
/* Whether the handle may act on domid (false with errno EPERM). */
bool xsim_pch_allowed(const struct xsim_pch *h, uint32_t domid);
/* domid's shared memory while it lives; NULL with errno (EPERM, ESRCH). */
struct xsim_cdom *xsim_pch_dom(struct xsim_pch *h, uint32_t domid);

/* File offset of guest frame gfn in the RAM memfd, or -1 when gfn is not guest RAM. */
int64_t xsim_gfn_offset(const struct xsim_domctl *ctl, uint64_t gfn);

/*
 * The ioreq server (domain, id) whose mapped ioreq pages contain va, and va's offset in them
 * when off is not NULL (lib_fmem.c).
 */
bool xsim_resource_find(const void *va, uint32_t *domid, uint32_t *server, size_t *off);

/* Map `pages` frames (offsets[i], -1 for none) at one reserved range; NULL with errno. */
void *xsim_map_frames(int fd, const int64_t *offsets, size_t pages, int prot);

#endif
