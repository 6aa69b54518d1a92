/*
 * xen-virtiod --check-host: what this host needs to serve guests, one line per item,
 *   OK   ITEM: what was found
 *   WARN ITEM: what was found; fix: what to do
 *   FAIL ITEM: what was found; fix: what to do
 * The Xen side's items come from ioreq/ (xen_check_host); the sandbox's, tap's and bridge's are
 * checked here. A failed start logs the same lines for what is wrong, so the daemon's own error
 * gives the same diagnosis as the check.
 */
#ifndef XVD_HOSTCHECK_H
#define XVD_HOSTCHECK_H

#include <stdio.h>

/* Print every item to out; returns 0, or 1 when any item is FAIL (the exit status). */
int hostcheck_run(FILE *out);

/* After a failed start: log every FAIL item, and the WARN items that can stop a device. */
void hostcheck_explain(void);

#endif
