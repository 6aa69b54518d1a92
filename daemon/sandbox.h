/*
 * Least privilege once the daemon serves its guest.
 *
 * Two steps, because capabilities belong to a thread and are inherited by the threads it
 * creates later (libxenstore starts a reader thread for the death watch inside
 * xen_guest_start()):
 *   1. sandbox_drop_caps(), after the devices exist (tap, bridge, block devices, i2c adapters
 *      are open) and before xen_guest_start(): every capability goes.
 *   2. sandbox_enter(), after xen_guest_start() and before READY=1: no_new_privs, then a
 *      seccomp filter on every thread allowing only what the serving loop and teardown use;
 *      anything else kills the process (SIGSYS).
 *
 * Environment, for debugging only:
 *   XVD_NO_SECCOMP=1    no seccomp filter (capabilities are still dropped)
 *   XVD_SECCOMP_LOG=1   the filter logs (kernel audit, type=SECCOMP) instead of killing
 * Sanitizer builds (SAN=1) skip the filter: ASan/LSan's runtime needs ptrace and clone at exit.
 */
#ifndef XVD_SANDBOX_H
#define XVD_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>

/* 0, or a negative errno (logged). Drops the effective, permitted, inheritable and ambient
 * sets of the calling thread, and the bounding set when we may (CAP_SETPCAP). */
int sandbox_drop_caps(void);

/* True when the calling thread has no effective or permitted capability left. */
bool sandbox_caps_empty(void);

/* No default action given: kill the process. */
#define SANDBOX_KILL 0
/* The default action is SCMP_ACT_LOG: allowed, but the kernel logs it. */
#define SANDBOX_LOG  1

/*
 * Set no_new_privs and load the filter on every thread of the process (the function tests
 * use to prove the filter kills and allows). 0 or a negative errno (logged).
 */
int sandbox_load_filter(int mode);

/*
 * Before sandbox_enter(): the filter also allows TCP client sockets (IPv4 and IPv6, and the
 * IPv6 datagram socket a name lookup may open), for block devices on nbd://HOST that reconnect
 * while serving. Unix-socket NBD needs nothing more.
 */
void sandbox_allow_tcp_clients(void);

/*
 * Before sandbox_enter(): what librados and librbd need once serving, for rbd disks: TCP client
 * sockets (as above: monitors and OSDs are reconnected at any time) and the few calls their
 * threads make that nothing else here does (see sandbox_ceph_allowed in sandbox.c).
 */
void sandbox_allow_ceph(void);

/* What the daemon calls once serving: honours the environment above. 0 or a negative errno. */
int sandbox_enter(void);

/*
 * Before anything is set up for the guest: can this kernel and libseccomp load the filter
 * sandbox_enter() will load? 0 (also when the environment or a sanitizer build turns the
 * filter off), or -ENOSYS after logging what is missing and how to run without the filter.
 */
int sandbox_check(void);

/* Whether this kernel can load seccomp filters at all: 0, or the errno it answered (EINVAL
 * without CONFIG_SECCOMP_FILTER). Installs nothing; the environment is not consulted. */
int sandbox_kernel_filters(void);

#endif
