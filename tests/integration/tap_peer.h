/*
 * The host's side of a guest's tap in the test's private network namespace (test_net.c,
 * test_restart_net.c): 10.0.0.1/24 on the tap, the guest (10.0.0.2) a permanent neighbour, a UDP
 * socket on the host's address. The interface ioctls are tests/lib/netns.h's.
 */
#ifndef XVD_TAP_PEER_H
#define XVD_TAP_PEER_H

#include <stdint.h>
#include <sys/time.h>

#include "tests/lib/netns.h"

#define IP_TAP     0x0a000001u
#define IP_GUEST   0x0a000002u

/* 10.0.0.1/24 on tap, up; the guest's MAC gmac a permanent neighbour; the tap's MAC in hmac. */
static inline void tap_peer_configure(const char *tap, const uint8_t gmac[6], uint8_t hmac[6])
{
	assert_int_equal(netns_if_addr(tap, IP_TAP, 0xffffff00u), 0);
	assert_int_equal(netns_if_hwaddr(tap, hmac), 0);
	assert_int_equal(netns_arp_static(tap, IP_GUEST, gmac), 0);
}

/* A UDP socket on the host's address, port; receives time out after timeout_s. */
static inline int tap_peer_udp(uint16_t port, int timeout_s)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(IP_TAP) };
	struct timeval tv = { .tv_sec = timeout_s };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return s;
}

#endif
