/* Shared between the files of ioreq/ only. */
#ifndef XVD_XEN_PRIV_H
#define XVD_XEN_PRIV_H

#include <stdbool.h>
#include <stdint.h>

struct ev_loop;
struct xs_handle;

/* Open a xenstore connection, logging why when it fails. */
struct xs_handle *xen_xs_open(void);

/* The domain still exists for xenstored (introduced and not yet released). */
bool xen_xs_domain_alive(struct xs_handle *xs, uint32_t domid);

/*
 * Watch @releaseDomain and call cb(opaque) once, from the loop, when domid is gone. The first
 * check runs as soon as the loop runs, so a domain that died before the watch is noticed too.
 */
struct xen_death_watch;
struct xen_death_watch *xen_death_watch_start(struct ev_loop *loop, uint32_t domid,
					      void (*cb)(void *opaque), void *opaque);
void xen_death_watch_stop(struct xen_death_watch *w);

#endif
