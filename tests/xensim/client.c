/* The drop-in libraries' side of the hub connection. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/xensim/client.h"
#include "tests/xensim/fault.h"

int xsim_connect(void)
{
	const char *path = getenv(XSIM_ENV_SOCKET);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENOENT;   /* as if /dev/xen/privcmd were missing */
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

struct xsim_msg *xsim_msg_new(uint32_t op, uint32_t domid)
{
	struct xsim_msg *m = calloc(1, sizeof(*m));

	if (m) {
		m->op = op;
		m->domid = domid;
	}
	return m;
}

static int xsim_send(int conn, struct xsim_msg *m, int send_fd)
{
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
	struct iovec iov = { m, XSIM_MSG_HDR + m->len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (send_fd >= 0) {
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &send_fd, sizeof(int));
	}
	return sendmsg(conn, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* Keep the first nfds passed descriptors, close any others. */
static void xsim_take_fds(struct msghdr *mh, int *fds, unsigned nfds)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		for (unsigned i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (i < nfds)
				fds[i] = fd;
			else
				close(fd);
		}
	}
}

int xsim_rpc(int conn, struct xsim_msg *m, int send_fd, int *fds, unsigned nfds)
{
	union { char buf[CMSG_SPACE(4 * sizeof(int))]; struct cmsghdr align; } u;
	struct iovec iov = { m, sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	ssize_t n;

	for (unsigned i = 0; i < nfds; i++)
		fds[i] = -1;
	if (xsim_send(conn, m, send_fd) < 0)
		return -errno;
	do
		n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < (ssize_t)XSIM_MSG_HDR) {
		errno = n < 0 ? errno : EIO;   /* the hub went away: like a dead hypervisor call */
		return -errno;
	}
	xsim_take_fds(&mh, fds, nfds);
	if (m->rc < 0)
		errno = -m->rc;
	return m->rc;
}

struct xsim_cdom *xsim_domcache_get(struct xsim_domcache *dc, int conn, uint32_t domid)
{
	struct xsim_msg *m;
	struct xsim_cdom *v, c = { .domid = domid };
	int fds[2];

	for (unsigned i = 0; i < dc->n; i++)
		if (dc->v[i].domid == domid)
			return &dc->v[i];
	m = xsim_msg_new(XSIM_OP_DOMAIN, domid);
	if (!m || xsim_rpc(conn, m, -1, fds, 2) < 0) {
		free(m);
		return NULL;
	}
	free(m);
	c.ram_fd = fds[0];
	c.ctl = mmap(NULL, sizeof(*c.ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
	close(fds[1]);
	v = c.ctl != MAP_FAILED ? realloc(dc->v, (dc->n + 1) * sizeof(*v)) : NULL;
	if (!v) {
		if (c.ctl != MAP_FAILED)
			munmap(c.ctl, sizeof(*c.ctl));
		close(c.ram_fd);
		errno = ENOMEM;
		return NULL;
	}
	dc->v = v;
	dc->v[dc->n] = c;
	return &dc->v[dc->n++];
}

void xsim_domcache_free(struct xsim_domcache *dc)
{
	for (unsigned i = 0; i < dc->n; i++) {
		munmap(dc->v[i].ctl, sizeof(*dc->v[i].ctl));
		close(dc->v[i].ram_fd);
	}
	free(dc->v);
	dc->v = NULL;
	dc->n = 0;
}

int64_t xsim_gfn_offset(const struct xsim_domctl *ctl, uint64_t gfn)
{
	uint64_t off = 0;

	if (gfn > UINT64_MAX / XSIM_PAGE)
		return -1;
	for (unsigned b = 0; b < 2; b++) {
		uint64_t gpa = gfn * XSIM_PAGE, base = ctl->bank_base[b], size = ctl->bank_size[b];

		if (gpa >= base && gpa - base < size)
			return (int64_t)(off + gpa - base);
		off += size;
	}
	return -1;
}

void *xsim_map_frames(int fd, const int64_t *offsets, size_t pages, int prot)
{
	uint8_t *base;

	if (pages == 0 || pages > SIZE_MAX / XSIM_PAGE) {
		errno = EINVAL;
		return NULL;
	}
	/* Reserve the whole range first so runs of frames can be placed with MAP_FIXED. */
	base = mmap(NULL, pages * XSIM_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return NULL;
	for (size_t i = 0; i < pages;) {
		size_t run = 1;

		if (offsets[i] < 0) {
			i++;
			continue;
		}
		while (i + run < pages &&
		       offsets[i + run] == offsets[i] + (int64_t)(run * XSIM_PAGE))
			run++;
		if (mmap(base + i * XSIM_PAGE, run * XSIM_PAGE, prot, MAP_SHARED | MAP_FIXED, fd,
			 offsets[i]) == MAP_FAILED) {
			int e = errno;

			munmap(base, pages * XSIM_PAGE);
			errno = e;
			return NULL;
		}
		i += run;
	}
	return base;
}

void xsim_note_restricted(int conn, uint32_t domid, uint32_t bit)
{
	struct xsim_domcache dc = { 0 };
	struct xsim_cdom *d = xsim_domcache_get(&dc, conn, domid);

	/* A restriction to a domain that does not exist restricts nothing worth recording. */
	if (d)
		atomic_fetch_or(&d->ctl->restricted, bit);
	xsim_domcache_free(&dc);
}

void *xsim_pch_open(size_t size)
{
	struct xsim_pch *h = size >= sizeof(*h) ? calloc(1, size) : NULL;

	if (!h)
		return NULL;
	h->restrict_domid = -1;
	h->conn = xsim_fault("privcmd") ? (errno = ENOENT, -1) : xsim_connect();
	if (h->conn < 0) {
		free(h);
		return NULL;
	}
	return h;
}

int xsim_pch_close(struct xsim_pch *h)
{
	if (!h)
		return 0;
	xsim_domcache_free(&h->dc);
	close(h->conn);
	free(h);
	return 0;
}

bool xsim_pch_allowed(const struct xsim_pch *h, uint32_t domid)
{
	if (h->restrict_domid >= 0 && h->restrict_domid != domid) {
		errno = EPERM;
		return false;
	}
	return true;
}

int xsim_pch_restrict(struct xsim_pch *h, uint32_t domid, uint32_t bit)
{
	if (!xsim_pch_allowed(h, domid))
		return -1;
	h->restrict_domid = domid;
	xsim_note_restricted(h->conn, domid, bit);
	return 0;
}

struct xsim_cdom *xsim_pch_dom(struct xsim_pch *h, uint32_t domid)
{
	struct xsim_cdom *d;

	if (!xsim_pch_allowed(h, domid))
		return NULL;
	d = xsim_domcache_get(&h->dc, h->conn, domid);
	if (d && !atomic_load(&d->ctl->alive)) {
		errno = ESRCH;
		return NULL;
	}
	return d;
}
