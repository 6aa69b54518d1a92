/*
 * What this host offers a device model, checked without touching any guest (xen-virtiod
 * --check-host, and the explanation after a failed start): the Xen device nodes behind the
 * stable libraries, xenstored, whether the hypervisor answers device-model calls at all (Arm
 * needs CONFIG_IOREQ_SERVER, which Debian's hypervisor lacks), the dom0 kernel's privcmd
 * eventfd support, and the hypervisor's version. Every probe is a harmless query.
 */
#include "ioreq/xen.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xencall.h>
#include <xendevicemodel.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xengnttab.h>
#include <xenstore.h>
#include <xentoollog.h>
#include <xen/version.h>
#include <xen/xen.h>

#include "ioreq/privcmd.h"

/* The tested Xen release (DESIGN.md §3, docs/testing.md). */
#define PROBE_TESTED_MAJOR 4
#define PROBE_TESTED_MINOR 17
/* dm_op and ioreq interfaces are unchanged up to this one (E2E-NOTES.md). */
#define PROBE_SAME_ABI_MINOR 22

/* The libraries report open failures through their logger: the check says it better. */
static void probe_vmessage(struct xentoollog_logger *l, xentoollog_level level, int errnoval,
			   const char *context, const char *format, va_list al)
{
	(void)l;
	(void)level;
	(void)errnoval;
	(void)context;
	(void)format;
	(void)al;
}

static void probe_destroy(struct xentoollog_logger *l)
{
	(void)l;
}

static struct xentoollog_logger probe_quiet = {
	.vmessage = probe_vmessage, .destroy = probe_destroy,
};

struct probe {
	void (*cb)(void *opaque, const struct xen_check_item *it);
	void *opaque;
};

static void probe_report(struct probe *p, enum xen_check_status st, const char *item,
			 const char *fix, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void probe_report(struct probe *p, enum xen_check_status st, const char *item,
			 const char *fix, const char *fmt, ...)
{
	struct xen_check_item it = { .status = st, .item = item };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(it.what, sizeof(it.what), fmt, ap);
	va_end(ap);
	snprintf(it.fix, sizeof(it.fix), "%s", st == XEN_CHECK_OK || !fix ? "" : fix);
	p->cb(p->opaque, &it);
}

/* Why a /dev/xen node did not open, as advice. */
static const char *probe_open_fix(int err, const char *module)
{
	static char buf[192];

	if (err == EACCES || err == EPERM)
		return "run as root (the Xen device nodes are root's)";
	snprintf(buf, sizeof(buf), "is this dom0 under Xen? Boot the host with Xen; load %s "
		 "(modprobe %s) and mount xenfs on /proc/xen", module, module);
	return buf;
}

static void probe_privcmd(struct probe *p)
{
	xendevicemodel_handle *dm = xendevicemodel_open(&probe_quiet, 0);
	int e = errno;
	xenforeignmemory_handle *fm = dm ? xenforeignmemory_open(&probe_quiet, 0) : NULL;

	if (dm && !fm)
		e = errno;
	if (dm && fm)
		probe_report(p, XEN_CHECK_OK, "privcmd", NULL,
			     "/dev/xen/privcmd opens (device model, foreign memory)");
	else
		probe_report(p, XEN_CHECK_FAIL, "privcmd", probe_open_fix(e, "xen-privcmd"),
			     "/dev/xen/privcmd cannot be opened (%s)", strerror(e));
	if (fm)
		xenforeignmemory_close(fm);
	if (dm)
		xendevicemodel_close(dm);
}

static void probe_evtchn(struct probe *p)
{
	xenevtchn_handle *x = xenevtchn_open(&probe_quiet, 0);

	if (x) {
		probe_report(p, XEN_CHECK_OK, "evtchn", NULL, "/dev/xen/evtchn opens");
		xenevtchn_close(x);
	} else {
		int e = errno;

		probe_report(p, XEN_CHECK_FAIL, "evtchn", probe_open_fix(e, "xen-evtchn"),
			     "/dev/xen/evtchn cannot be opened (%s)", strerror(e));
	}
}

static void probe_gntdev(struct probe *p)
{
	xengnttab_handle *x = xengnttab_open(&probe_quiet, 0);

	if (x) {
		probe_report(p, XEN_CHECK_OK, "gntdev", NULL,
			     "/dev/xen/gntdev opens (grant-mapped guests can be served)");
		xengnttab_close(x);
	} else {
		int e = errno;

		probe_report(p, XEN_CHECK_WARN, "gntdev",
			     "load xen-gntdev (modprobe xen-gntdev); only guests with grant_usage "
			     "need it",
			     "/dev/xen/gntdev cannot be opened (%s): guests using grants cannot be "
			     "served", strerror(e));
	}
}

/*
 * In a child: connect and read, then report (what failed, errno) on fd. Through
 * /dev/xen/xenbus a request waits for a xenstored that may never answer, so the parent
 * gives the child PROBE_XS_TIMEOUT_MS and then says so.
 */
#define PROBE_XS_TIMEOUT_MS 5000

struct probe_xs_result {
	int stage;                /* 0 answered, 1 no connection, 2 no answer */
	int err;
};

static void probe_xenstore_child(int fd)
{
	struct probe_xs_result r = { 1, 0 };
	struct xs_handle *xs = xs_open(0);
	unsigned len;
	char *v;

	if (xs) {
		/*
		 * Any answer, "no such node" included, proves xenstored is serving; so does a
		 * refusal: in a driver domain dom0's nodes are not ours to read (EACCES).
		 */
		errno = 0;
		v = xs_read(xs, XBT_NULL, "/local/domain/0/name", &len);
		r.stage = v || errno == ENOENT || errno == EACCES ? 0 : 2;
		free(v);
	}
	r.err = errno ? errno : EIO;
	_exit(write(fd, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 1);
}

static void probe_xenstore(struct probe *p)
{
	static const char fix[] = "start xenstored (systemctl start xenstored, or Debian's "
				  "/etc/init.d/xen start) and check /dev/xen/xenbus";
	struct probe_xs_result r = { 2, ETIMEDOUT };
	struct pollfd pf;
	int fds[2], st;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		probe_report(p, XEN_CHECK_WARN, "xenstore", NULL, "not checked: %s", strerror(errno));
		return;
	}
	if (pid == 0)
		probe_xenstore_child(fds[1]);
	close(fds[1]);
	pf = (struct pollfd){ .fd = fds[0], .events = POLLIN };
	if (poll(&pf, 1, PROBE_XS_TIMEOUT_MS) != 1 || read(fds[0], &r, sizeof(r)) != sizeof(r))
		kill(pid, SIGKILL);
	close(fds[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (r.stage == 0)
		probe_report(p, XEN_CHECK_OK, "xenstore", NULL, "xenstored answers");
	else if (r.stage == 1)
		probe_report(p, XEN_CHECK_FAIL, "xenstore", fix, "cannot connect to xenstored (%s)",
			     strerror(r.err));
	else if (r.err == ETIMEDOUT)
		probe_report(p, XEN_CHECK_FAIL, "xenstore", fix,
			     "xenstored does not answer (no reply within %d s)",
			     PROBE_XS_TIMEOUT_MS / 1000);
	else
		probe_report(p, XEN_CHECK_FAIL, "xenstore", fix, "xenstored does not answer (%s)",
			     strerror(r.err));
}

/*
 * XEN_DMOP_nr_vcpus on a domain that cannot exist: a hypervisor with device-model support looks
 * the domain up and says ESRCH (or refuses with EPERM/EACCES); without CONFIG_IOREQ_SERVER on
 * Arm the dm_op hypercall itself does not exist: ENOSYS.
 */
static void probe_dm_op(struct probe *p)
{
	xendevicemodel_handle *dm = xendevicemodel_open(&probe_quiet, 0);
	unsigned vcpus;
	int rc, e;

	if (!dm) {
		probe_report(p, XEN_CHECK_FAIL, "dm-op", "see privcmd above",
			     "not checked: /dev/xen/privcmd cannot be opened");
		return;
	}
	rc = xendevicemodel_nr_vcpus(dm, DOMID_INVALID, &vcpus);
	e = errno;
	xendevicemodel_close(dm);
	if (rc < 0 && e == ENOSYS)
		probe_report(p, XEN_CHECK_FAIL, "dm-op",
			     "install a hypervisor built with CONFIG_IOREQ_SERVER=y: "
			     "scripts/build-xen-ioreq.sh builds Debian's Xen that way "
			     "(docs/operations.md, \"An IOREQ-enabled Xen\")",
			     "the hypervisor does not answer device-model calls (ENOSYS): it was "
			     "built without CONFIG_IOREQ_SERVER (Debian's arm64 Xen is)");
	else
		probe_report(p, XEN_CHECK_OK, "dm-op", NULL,
			     "the hypervisor answers device-model calls (ioreq servers available)");
}

static void probe_fastpath(struct probe *p)
{
	struct xvd_privcmd_irqfd a = { .fd = (uint32_t)-1, .flags = XVD_PRIVCMD_DEASSIGN,
				       .dom = DOMID_INVALID };
	struct xen_privcmd *pc;
	int rc = xen_privcmd_open(DOMID_INVALID, &pc);

	if (rc < 0) {
		probe_report(p, XEN_CHECK_WARN, "fast-path", "see privcmd above",
			     "not checked: /dev/xen/privcmd cannot be opened (%s)", strerror(-rc));
		return;
	}
	/* Deassigning nothing: a kernel that knows the ioctl says EBADF (or ENOENT). */
	rc = xen_privcmd_irqfd(pc, &a);
	xen_privcmd_close(pc);
	if (rc == -ENOTTY || rc == -EOPNOTSUPP)
		probe_report(p, XEN_CHECK_WARN, "fast-path",
			     "a Linux 6.7+ dom0 kernel with CONFIG_XEN_PRIVCMD_EVENTFD=y gives the "
			     "faster notify path; the ioreq path works without it",
			     "the dom0 kernel has no privcmd ioeventfd/irqfd (%s)", strerror(-rc));
	else
		probe_report(p, XEN_CHECK_OK, "fast-path", NULL,
			     "the dom0 kernel offers privcmd ioeventfd/irqfd");
}

static void probe_version(struct probe *p)
{
	xencall_handle *xc = xencall_open(&probe_quiet, 0);
	char extra[sizeof(xen_extraversion_t) + 1] = "";
	char *buf;
	int v;

	if (!xc) {
		probe_report(p, XEN_CHECK_WARN, "xen-version", "see privcmd above",
			     "unknown: no hypercall interface (%s)", strerror(errno));
		return;
	}
	v = xencall2(xc, __HYPERVISOR_xen_version, XENVER_version, 0);
	buf = xencall_alloc_buffer(xc, sizeof(xen_extraversion_t));
	if (buf && xencall2(xc, __HYPERVISOR_xen_version, XENVER_extraversion,
			    (uint64_t)(uintptr_t)buf) == 0)
		memcpy(extra, buf, sizeof(xen_extraversion_t));
	if (buf)
		xencall_free_buffer(xc, buf);
	xencall_close(xc);
	if (v < 0)
		probe_report(p, XEN_CHECK_WARN, "xen-version", NULL, "unknown: %s",
			     strerror(errno));
	else if (v >> 16 == PROBE_TESTED_MAJOR && (v & 0xffff) == PROBE_TESTED_MINOR)
		probe_report(p, XEN_CHECK_OK, "xen-version", NULL, "Xen %d.%d%s (tested)", v >> 16,
			     v & 0xffff, extra);
	else if (v >> 16 == PROBE_TESTED_MAJOR && (v & 0xffff) > PROBE_TESTED_MINOR &&
		 (v & 0xffff) <= PROBE_SAME_ABI_MINOR)
		probe_report(p, XEN_CHECK_WARN, "xen-version",
			     "expected to work (same device-model interfaces); report problems",
			     "Xen %d.%d%s is not tested (4.17 is)", v >> 16, v & 0xffff, extra);
	else
		probe_report(p, XEN_CHECK_WARN, "xen-version",
			     "Xen 4.17 is tested; 4.18 to 4.22 are expected to work",
			     "Xen %d.%d%s is not tested", v >> 16, v & 0xffff, extra);
}

void xen_check_host(void (*cb)(void *opaque, const struct xen_check_item *it), void *opaque)
{
	struct probe p = { cb, opaque };

	probe_privcmd(&p);
	probe_evtchn(&p);
	probe_gntdev(&p);
	probe_xenstore(&p);
	probe_dm_op(&p);
	probe_fastpath(&p);
	probe_version(&p);
}
