/* Helpers over struct iovec arrays: copying to/from, sizes, slicing. Bounds-checked. */
#ifndef XVD_IOV_H
#define XVD_IOV_H

#include <stddef.h>
#include <sys/uio.h>

/* Total bytes in iov[0..n). */
size_t iov_size(const struct iovec *iov, unsigned n);
/* Copy up to len bytes starting at byte offset off of the iovec into buf; returns bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len);
/* Copy up to len bytes from buf into the iovec at byte offset off; returns bytes copied. */
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len);
/* Fill len bytes at offset off with zeroes; returns bytes written. */
size_t iov_memset(const struct iovec *iov, unsigned n, size_t off, int c, size_t len);
/*
 * Describe bytes [off, off+len) of src as a new iovec in dst (capacity dst_cap, no copying).
 * Returns the number of entries used, or -1 when dst_cap is too small or the range exceeds src.
 */
int iov_slice(const struct iovec *src, unsigned n, size_t off, size_t len,
	      struct iovec *dst, unsigned dst_cap);

#endif
