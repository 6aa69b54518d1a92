/*
 * xen-virtiod-settarget: the toolstack's part of running xen-virtiod in a driver domain. Run in
 * dom0 after the guest was created paused (xl create -p) and before it is unpaused:
 *
 *   xen-virtiod-settarget [--wait SECONDS] GUEST BACKEND
 *
 * GUEST and BACKEND are domain names or domids. Three steps, each a line on stdout:
 *   1. Xen: BACKEND becomes the device model of GUEST (XEN_DOMCTL_set_target, libxenctrl's
 *      xc_domain_set_target). Under Xen's default (dummy) XSM policy, dm_op and
 *      XENMEM_acquire_resource on GUEST (XSM_DM_PRIV) are then allowed to BACKEND: creating and
 *      mapping the ioreq server, set_irq_level, nr_vcpus.
 *   2. xenstored: BACKEND gets GUEST's rights on xenstore nodes (XS_SET_TARGET), so that it can
 *      read /local/domain/GUEST (the name, and whether the guest still exists).
 *   3. xenstored: BACKEND may watch @releaseDomain (read permission on that special node; its
 *      default permissions let only privileged domains see the event).
 *
 * libxenctrl is not a stable interface: that is why this is a program of its own, run by the
 * toolstack in dom0, and not part of the daemon. With --wait, the helper first waits up to
 * SECONDS for GUEST to exist and be introduced to xenstored (for use beside a running
 * `xl create -p`, which waits for the back-end's handshake before it returns).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xenctrl.h>
#include <xenstore.h>

static const char *prog = "xen-virtiod-settarget";

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [--wait SECONDS] GUEST BACKEND\n"
		   "  GUEST, BACKEND: domain names or domids. Makes BACKEND the device model of GUEST\n"
		   "  for Xen (set_target) and xenstored (set_target, @releaseDomain read permission).\n",
		prog);
}

static bool parse_domid(const char *s, unsigned *out)
{
	char *end;
	unsigned long v;

	if (!*s || strspn(s, "0123456789") != strlen(s))
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v >= DOMID_FIRST_RESERVED)
		return false;
	*out = (unsigned)v;
	return true;
}

/* A name or a domid -> domid, from /local/domain/<id>/name; -1 when there is none. */
static int lookup(struct xs_handle *xs, const char *who, unsigned *domid)
{
	unsigned n = 0, len;
	char **ids, path[64], *v;
	int rc = -1;

	if (parse_domid(who, domid))
		return 0;
	ids = xs_directory(xs, XBT_NULL, "/local/domain", &n);
	for (unsigned i = 0; ids && i < n && rc; i++) {
		unsigned id;

		if (!parse_domid(ids[i], &id))
			continue;
		snprintf(path, sizeof(path), "/local/domain/%u/name", id);
		v = xs_read(xs, XBT_NULL, path, &len);
		if (v && strcmp(v, who) == 0) {
			*domid = id;
			rc = 0;
		}
		free(v);
	}
	free(ids);
	return rc;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * Step 3: add r<backend> to @releaseDomain's permissions, keeping those already there. C
 * xenstored 4.17 cannot read a special node's permissions back (GET_PERMS: EINVAL,
 * tools/xenstore/xenstored_core.c do_get_perms() looks up a real node only): then the
 * permissions become its default (dom0 owns it, nobody else reads) plus r<backend>.
 */
static int allow_release_watch(struct xs_handle *xs, unsigned backend)
{
	unsigned n = 0;
	struct xs_permissions *p = xs_get_permissions(xs, XBT_NULL, "@releaseDomain", &n), *q;
	int rc = 0;

	if (!p && errno == EINVAL) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return -1;
		p[0].id = 0;
		p[0].perms = XS_PERM_NONE;
		n = 1;
	} else if (!p) {
		fprintf(stderr, "%s: reading the permissions of @releaseDomain: %s\n", prog,
			strerror(errno));
		return -1;
	}
	for (unsigned i = 1; i < n; i++)
		if (p[i].id == backend && (p[i].perms & XS_PERM_READ)) {
			printf("xenstored: domain %u may already watch @releaseDomain\n", backend);
			free(p);
			return 0;
		}
	q = realloc(p, (n + 1) * sizeof(*p));
	if (!q) {
		free(p);
		return -1;
	}
	q[n].id = backend;
	q[n].perms = XS_PERM_READ;
	if (!xs_set_permissions(xs, XBT_NULL, "@releaseDomain", q, n + 1)) {
		fprintf(stderr, "%s: xenstored refused new permissions on @releaseDomain: %s\n", prog,
			strerror(errno));
		rc = -1;
	} else {
		printf("xenstored: domain %u may watch @releaseDomain\n", backend);
	}
	free(q);
	return rc;
}

int main(int argc, char **argv)
{
	long wait_ms = 0;
	unsigned guest = 0, backend = 0;
	struct xs_handle *xs;
	xc_interface *xch;
	int a = 1, rc = 1;

	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc > 2 && !strcmp(argv[1], "--wait")) {
		char *end;
		long s = strtol(argv[2], &end, 10);

		if (*end || s < 0 || s > 3600) {
			usage(stderr);
			return 2;
		}
		wait_ms = s * 1000;
		a = 3;
	}
	if (argc - a != 2) {
		usage(stderr);
		return 2;
	}
	xs = xs_open(0);
	if (!xs) {
		fprintf(stderr, "%s: cannot connect to xenstored: %s\n", prog, strerror(errno));
		return 1;
	}
	for (long t = 0;; t += 10) {
		if (lookup(xs, argv[a], &guest) == 0 && lookup(xs, argv[a + 1], &backend) == 0 &&
		    xs_is_domain_introduced(xs, guest))
			break;
		if (t >= wait_ms) {
			fprintf(stderr, "%s: %s or %s: no such domain (introduced to xenstored)\n",
				prog, argv[a], argv[a + 1]);
			xs_close(xs);
			return 1;
		}
		sleep_ms(10);
	}
	if (guest == backend || guest == 0 || backend == 0) {
		fprintf(stderr, "%s: GUEST and BACKEND must be two domains other than dom0\n", prog);
		xs_close(xs);
		return 2;
	}
	xch = xc_interface_open(NULL, NULL, 0);
	if (!xch) {
		fprintf(stderr, "%s: cannot open libxenctrl: %s\n", prog, strerror(errno));
		xs_close(xs);
		return 1;
	}
	if (xc_domain_set_target(xch, backend, guest)) {
		int e = errno;

		fprintf(stderr, "%s: Xen refused XEN_DOMCTL_set_target (domain %u -> target %u): %s%s\n",
			prog, backend, guest, strerror(e),
			e == EINVAL ? " (Xen keeps one target per domain, set once for the domain's "
				      "lifetime: xen/common/domctl.c, do_domctl, XEN_DOMCTL_set_target)"
				    : "");
		goto out;
	}
	printf("Xen: domain %u is the device model of domain %u (set_target)\n", backend, guest);
	if (!xs_set_target(xs, backend, guest)) {
		fprintf(stderr, "%s: xenstored refused SET_TARGET (%u -> %u): %s\n", prog, backend,
			guest, strerror(errno));
		goto out;
	}
	printf("xenstored: domain %u has domain %u's rights on its nodes (set_target)\n", backend,
	       guest);
	if (allow_release_watch(xs, backend) == 0)
		rc = 0;
out:
	xc_interface_close(xch);
	xs_close(xs);
	return rc;
}
