#include "devices/iov.h"

#include <string.h>

size_t iov_size(const struct iovec *iov, unsigned n)
{
	size_t total = 0;

	for (unsigned i = 0; i < n; i++)
		total += iov[i].iov_len;
	return total;
}

/*
 * Find the entry holding byte `off`: returns its index (n when off is at or past the end) and
 * leaves the offset inside that entry in *skip.
 */
static unsigned iov_seek(const struct iovec *iov, unsigned n, size_t off, size_t *skip)
{
	unsigned i = 0;

	while (i < n && off >= iov[i].iov_len) {
		off -= iov[i].iov_len;
		i++;
	}
	*skip = off;
	return i;
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len)
{
	size_t skip, done = 0;

	/* A device header usually sits in the first buffer: one copy, no walk. */
	if (n && off < iov[0].iov_len && len <= iov[0].iov_len - off) {
		memcpy(buf, (const char *)iov[0].iov_base + off, len);
		return len;
	}

	for (unsigned i = iov_seek(iov, n, off, &skip); i < n && done < len; i++, skip = 0) {
		size_t chunk = iov[i].iov_len - skip;

		if (chunk > len - done)
			chunk = len - done;
		memcpy((char *)buf + done, (const char *)iov[i].iov_base + skip, chunk);
		done += chunk;
	}
	return done;
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len)
{
	size_t skip, done = 0;

	for (unsigned i = iov_seek(iov, n, off, &skip); i < n && done < len; i++, skip = 0) {
		size_t chunk = iov[i].iov_len - skip;

		if (chunk > len - done)
			chunk = len - done;
		memcpy((char *)iov[i].iov_base + skip, (const char *)buf + done, chunk);
		done += chunk;
	}
	return done;
}

size_t iov_memset(const struct iovec *iov, unsigned n, size_t off, int c, size_t len)
{
	size_t skip, done = 0;

	for (unsigned i = iov_seek(iov, n, off, &skip); i < n && done < len; i++, skip = 0) {
		size_t chunk = iov[i].iov_len - skip;

		if (chunk > len - done)
			chunk = len - done;
		memset((char *)iov[i].iov_base + skip, c, chunk);
		done += chunk;
	}
	return done;
}

int iov_slice(const struct iovec *src, unsigned n, size_t off, size_t len,
	      struct iovec *dst, unsigned dst_cap)
{
	size_t skip, left = len;
	unsigned used = 0;
	unsigned i = iov_seek(src, n, off, &skip);

	for (; i < n && left > 0; i++, skip = 0) {
		size_t chunk = src[i].iov_len - skip;

		if (chunk == 0)
			continue;
		if (used == dst_cap)
			return -1;
		if (chunk > left)
			chunk = left;
		dst[used].iov_base = (char *)src[i].iov_base + skip;
		dst[used].iov_len = chunk;
		used++;
		left -= chunk;
	}
	/* The requested range runs past the end of src. */
	if (left > 0)
		return -1;
	return (int)used;
}
