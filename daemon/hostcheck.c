/*
 * The host check (daemon/hostcheck.h): the Xen side's items from ioreq/probe.c, then the ones
 * that are not Xen: the seccomp filter the daemon loads before serving, tap devices and
 * bridges for net devices.
 */
#include "daemon/hostcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_bridge.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/sandbox.h"
#include "ioreq/xen.h"
#include "lib/log.h"

static void hc_set(struct xen_check_item *it, enum xen_check_status st, const char *what,
		   const char *fix, int err)
{
	it->status = st;
	snprintf(it->what, sizeof(it->what), "%s%s%s%s", what, err ? " (" : "",
		 err ? strerror(err) : "", err ? ")" : "");
	snprintf(it->fix, sizeof(it->fix), "%s", st == XEN_CHECK_OK ? "" : fix);
}

/* The daemon refuses to serve without its filter (daemon/sandbox.h, sandbox_check()). */
static void hc_seccomp(struct xen_check_item *it)
{
	int e = sandbox_kernel_filters();

	it->item = "seccomp";
	if (!e)
		hc_set(it, XEN_CHECK_OK, "the kernel offers seccomp filters", "", 0);
	else
		hc_set(it, XEN_CHECK_FAIL, "the kernel cannot load seccomp filters",
		       "a dom0 kernel with CONFIG_SECCOMP_FILTER=y; without it the daemon serves only "
		       "with XVD_NO_SECCOMP=1 in its environment (capabilities are still dropped)", e);
}

static void hc_tap(struct xen_check_item *it)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	int e = errno;

	it->item = "tap";
	if (fd >= 0) {
		close(fd);
		hc_set(it, XEN_CHECK_OK, "/dev/net/tun opens (net devices can use taps)", "", 0);
	} else {
		hc_set(it, XEN_CHECK_WARN, "/dev/net/tun cannot be opened",
		       "load tun (modprobe tun; CONFIG_TUN); only [net] devices need it", e);
	}
}

/* The bridge ioctls' version query: answered when bridging is built in or loadable. */
static void hc_bridge(struct xen_check_item *it)
{
	unsigned long args[3] = { BRCTL_GET_VERSION, 0, 0 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc = fd < 0 ? -1 : ioctl(fd, SIOCGIFBR, args);
	int e = errno;

	if (fd >= 0)
		close(fd);
	it->item = "bridge";
	if (rc >= 0)
		hc_set(it, XEN_CHECK_OK, "the kernel can bridge (net devices may name a bridge)", "",
		       0);
	else
		hc_set(it, XEN_CHECK_WARN, "the kernel cannot bridge",
		       "load bridge (modprobe bridge; CONFIG_BRIDGE); only [net] devices with "
		       "bridge = need it", e);
}

static const char *const hc_label[] = { "OK", "WARN", "FAIL" };

struct hc_run {
	FILE *out;
	bool failed;
};

static void hc_print(void *opaque, const struct xen_check_item *it)
{
	struct hc_run *r = opaque;

	fprintf(r->out, "%-4s %s: %s%s%s\n", hc_label[it->status], it->item, it->what,
		it->fix[0] ? "; fix: " : "", it->fix);
	r->failed |= it->status == XEN_CHECK_FAIL;
}

/* The daemon's own items, then nothing else: ioreq/ did the Xen ones. */
static void hc_local(void (*cb)(void *opaque, const struct xen_check_item *it), void *opaque)
{
	void (*const checks[])(struct xen_check_item *) = { hc_seccomp, hc_tap, hc_bridge };

	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		struct xen_check_item it = { 0 };

		checks[i](&it);
		cb(opaque, &it);
	}
}

int hostcheck_run(FILE *out)
{
	struct hc_run r = { out, false };

	xen_check_host(hc_print, &r);
	hc_local(hc_print, &r);
	fflush(out);
	return r.failed ? 1 : 0;
}

/* Informational items never explain a failed start. */
static void hc_log(void *opaque, const struct xen_check_item *it)
{
	(void)opaque;
	if (it->status == XEN_CHECK_FAIL)
		log_err("host check: FAIL %s: %s; fix: %s", it->item, it->what, it->fix);
	else if (it->status == XEN_CHECK_WARN && strcmp(it->item, "fast-path") != 0 &&
		 strcmp(it->item, "xen-version") != 0)
		log_warn("host check: WARN %s: %s; fix: %s", it->item, it->what, it->fix);
}

void hostcheck_explain(void)
{
	xen_check_host(hc_log, NULL);
	hc_local(hc_log, NULL);
}
