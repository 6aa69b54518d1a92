/*
 * libxencall, simulated: only the xen_version hypercall (what xen-virtiod --check-host asks),
 * answered from $XENSIM_XEN_VERSION; buffers are plain memory. Also xsim_fault()
 * (tests/xensim/fault.h), which the other drop-ins consult when a handle opens.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xencall.h>
#include <xen/version.h>
#include <xen/xen.h>

#include "tests/xensim/client.h"
#include "tests/xensim/fault.h"

struct xencall_handle {
	int unused;
};

bool xsim_fault(const char *name)
{
	const char *f = getenv(XSIM_ENV_FAULTS);
	size_t n = strlen(name);

	for (; f && *f; f += strcspn(f, ","), f += *f == ',') {
		if (strncmp(f, name, n) == 0 && (f[n] == ',' || f[n] == '\0'))
			return true;
	}
	return false;
}

xencall_handle *xencall_open(struct xentoollog_logger *logger, unsigned open_flags)
{
	(void)logger;
	(void)open_flags;
	/* Like the other handles: no hub (no $XENSIM_SOCKET) is no /dev/xen/privcmd. */
	if (xsim_fault("privcmd") || !getenv(XSIM_ENV_SOCKET)) {
		errno = ENOENT;
		return NULL;
	}
	return calloc(1, sizeof(struct xencall_handle));
}

int xencall_close(xencall_handle *xcall)
{
	free(xcall);
	return 0;
}

/* "MAJOR.MINOR[EXTRA]", e.g. "4.17.5" is 4, 17 and ".5". */
static int call_version(unsigned *major, unsigned *minor, char *extra, size_t len)
{
	const char *v = getenv(XSIM_ENV_VERSION);
	int end = 0;

	if (!v)
		v = "4.17.5";
	if (sscanf(v, "%u.%u%n", major, minor, &end) != 2)
		return -1;
	snprintf(extra, len, "%s", v + end);
	return 0;
}

int xencall2(xencall_handle *xcall, unsigned int op, uint64_t arg1, uint64_t arg2)
{
	char extra[sizeof(xen_extraversion_t)];
	unsigned major, minor;

	(void)xcall;
	if (op != __HYPERVISOR_xen_version || call_version(&major, &minor, extra, sizeof(extra))) {
		errno = ENOSYS;
		return -1;
	}
	if (arg1 == XENVER_version)
		return (int)(major << 16 | minor);
	if (arg1 == XENVER_extraversion && arg2) {
		memcpy((void *)(uintptr_t)arg2, extra, sizeof(extra));
		return 0;
	}
	errno = ENOSYS;
	return -1;
}

void *xencall_alloc_buffer(xencall_handle *xcall, size_t size)
{
	(void)xcall;
	return calloc(1, size);
}

void xencall_free_buffer(xencall_handle *xcall, void *p)
{
	(void)xcall;
	free(p);
}
