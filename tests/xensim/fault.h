/*
 * Host faults the drop-in libraries show on request, for tests of xen-virtiod --check-host and
 * of the daemon's start-up diagnosis. $XENSIM_FAULTS is a comma-separated list of:
 *   privcmd    opening /dev/xen/privcmd fails with ENOENT (libxendevicemodel,
 *              libxenforeignmemory, libxencall): not dom0, or xen-privcmd not loaded
 *   evtchn     opening /dev/xen/evtchn fails with ENOENT
 *   gntdev     opening /dev/xen/gntdev fails with ENOENT
 *   no_dm_op   every device-model call fails with ENOSYS: a hypervisor built without
 *              CONFIG_IOREQ_SERVER (Debian's arm64 Xen)
 *   xs_unprivileged  xs_is_domain_introduced() fails with EACCES: the daemon runs in a driver
 *              domain, and xenstored answers IS_DOMAIN_INTRODUCED to privileged domains only;
 *              and xs_read() of a missing node under /local/domain/ fails with EACCES, not
 *              ENOENT (its nearest existing ancestor, /local/domain, is not readable to a domU),
 *              and of dom0's own nodes (/local/domain/0/...) with EACCES;
 *              and xs_open() calls access("/dev/xen/xenbus"), as the real library does there
 * xenstored being down is the hub's own xsim_xs_restart(hub, true). $XENSIM_XEN_VERSION
 * ("4.17.5" when unset) is what the xen_version hypercall answers (tests/xensim/lib_call.c).
 */
#ifndef XSIM_FAULT_H
#define XSIM_FAULT_H

#include <stdbool.h>

#define XSIM_ENV_FAULTS  "XENSIM_FAULTS"
#define XSIM_ENV_VERSION "XENSIM_XEN_VERSION"

/* True when name is in $XENSIM_FAULTS. */
bool xsim_fault(const char *name);

#endif
