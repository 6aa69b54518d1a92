/*
 * systemd's file descriptor store as lib/persist.h's struct fdstore: descriptors handed to the
 * service manager (FDSTORE=1 with FDNAME=, FileDescriptorStoreMax= in the unit) come back to
 * the next instance of the service (LISTEN_FDS, LISTEN_FDNAMES) after a crash or a restart.
 * Without a service manager that keeps them, nothing is kept and nothing comes back.
 */
#ifndef XVD_FDSTORE_H
#define XVD_FDSTORE_H

#include <stdbool.h>

#include "lib/persist.h"

/*
 * The store of this process: what systemd passed us (taken once, at the first call) and
 * what we keep. Never NULL.
 */
struct fdstore *fdstore_systemd(void);

/*
 * Whether a service manager may keep our descriptors: $NOTIFY_SOCKET names one (the units set
 * FileDescriptorStoreMax=). Without it nothing we keep survives us.
 */
bool fdstore_systemd_present(void);

/* Close whatever was passed and nobody took (at start, once everything is adopted). */
void fdstore_systemd_close_unused(void);

#endif
