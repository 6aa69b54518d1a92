/*
 * Ethernet / IPv4 / UDP / TCP frames as a guest builds them, and the checksum arithmetic to
 * check what comes back. Header-only, for the virtio-net unit and integration tests.
 */
#ifndef XVD_TEST_NET_FRAMES_H
#define XVD_TEST_NET_FRAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t csum_add(uint32_t sum, const uint8_t *d, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(d[i] << 8 | d[i + 1]);
	if (len & 1)
		sum += (uint32_t)d[len - 1] << 8;
	return sum;
}

static inline uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

static inline uint32_t pseudo_sum(const uint8_t *ip, uint8_t proto, size_t l4len)
{
	uint32_t sum = csum_add(0, ip + 12, 8);

	return sum + proto + (uint32_t)l4len;
}

/* True when the IPv4 header and the TCP/UDP checksum of the packet at ip are correct. */
static inline bool l4_csum_ok(const uint8_t *ip, size_t iplen)
{
	size_t ihl = (size_t)(ip[0] & 15) * 4;

	if (csum_fold(csum_add(0, ip, ihl)) != 0xffff)
		return false;
	return csum_fold(csum_add(pseudo_sum(ip, ip[9], iplen - ihl), ip + ihl, iplen - ihl)) ==
	       0xffff;
}

static inline size_t eth(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	put16(f + 12, type);
	return 14;
}

static inline size_t ipv4(uint8_t *p, uint8_t proto, uint32_t src, uint32_t dst, size_t l4len,
		   uint16_t id)
{
	memset(p, 0, 20);
	p[0] = 0x45;
	put16(p + 2, (uint16_t)(20 + l4len));
	put16(p + 4, id);
	p[6] = 0x40;      /* DF */
	p[8] = 64;
	p[9] = proto;
	put32(p + 12, src);
	put32(p + 16, dst);
	put16(p + 10, (uint16_t)~csum_fold(csum_add(0, p, 20)));
	return 20;
}

enum csum_mode { CSUM_FULL, CSUM_PARTIAL };

/* Ethernet + IPv4 + UDP; PARTIAL leaves the pseudo-header sum for NEEDS_CSUM. */
static inline size_t udp_frame(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint32_t sip,
			uint32_t dip, uint16_t sport, uint16_t dport, const uint8_t *pl, size_t n,
			enum csum_mode m)
{
	size_t o = eth(f, dst, src, 0x0800);
	uint8_t *ip = f + o, *u = ip + 20;

	o += ipv4(ip, 17, sip, dip, 8 + n, 1);
	put16(u, sport);
	put16(u + 2, dport);
	put16(u + 4, (uint16_t)(8 + n));
	put16(u + 6, 0);
	memcpy(u + 8, pl, n);
	uint32_t ps = pseudo_sum(ip, 17, 8 + n);

	put16(u + 6, m == CSUM_PARTIAL ? csum_fold(ps) : (uint16_t)~csum_fold(csum_add(ps, u, 8 + n)));
	return o + 8 + n;
}

/* A 20-byte TCP header, port 40000 to 5001, PSH ACK, checksum 0 (the caller's). */
static inline void tcp_hdr(uint8_t *t, uint32_t seq)
{
	memset(t, 0, 20);
	put16(t, 40000);
	put16(t + 2, 5001);
	put32(t + 4, seq);
	put32(t + 8, 1);
	t[12] = 5 << 4;
	t[13] = 0x18;     /* PSH ACK */
	put16(t + 14, 65535);
}

static inline size_t tcp_frame(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint32_t sip,
			uint32_t dip, uint32_t seq, const uint8_t *pl, size_t n, enum csum_mode m)
{
	size_t o = eth(f, dst, src, 0x0800);
	uint8_t *ip = f + o, *t = ip + 20;

	o += ipv4(ip, 6, sip, dip, 20 + n, 7);
	tcp_hdr(t, seq);
	memcpy(t + 20, pl, n);
	uint32_t ps = pseudo_sum(ip, 6, 20 + n);

	put16(t + 16, m == CSUM_PARTIAL ? csum_fold(ps) : (uint16_t)~csum_fold(csum_add(ps, t, 20 + n)));
	return o + 20 + n;
}

static inline void pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 8));
}

#endif
