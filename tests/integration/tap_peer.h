/*
 * The host's side of a guest's tap in the test's private network namespace (test_net.c,
 * test_restart_net.c): 10.0.0.1/24 on the tap, the guest (10.0.0.2) a permanent neighbour, a UDP
 * socket on the host's address.
 */
#ifndef XVD_TAP_PEER_H
#define XVD_TAP_PEER_H

#include <arpa/inet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define IP_TAP     0x0a000001u
#define IP_GUEST   0x0a000002u

static inline int sock_ioctl(unsigned long req, void *arg)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = s < 0 ? -1 : ioctl(s, req, arg);

	if (s >= 0)
		close(s);
	return rc;
}

static inline void ifr_init(struct ifreq *ifr, const char *name)
{
	memset(ifr, 0, sizeof(*ifr));
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", name);
}

static inline void sin_set(struct sockaddr *sa, uint32_t ip)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(ip) };

	memcpy(sa, &sin, sizeof(sin));
}

static inline void if_set_up(const char *name, bool up)
{
	struct ifreq ifr;

	ifr_init(&ifr, name);
	assert_int_equal(sock_ioctl(SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags = (short)(up ? ifr.ifr_flags | IFF_UP : ifr.ifr_flags & ~IFF_UP);
	assert_int_equal(sock_ioctl(SIOCSIFFLAGS, &ifr), 0);
}

/* 10.0.0.1/24 on tap, up; the guest's MAC gmac a permanent neighbour; the tap's MAC in hmac. */
static inline void tap_peer_configure(const char *tap, const uint8_t gmac[6], uint8_t hmac[6])
{
	struct ifreq ifr;
	struct arpreq req;

	ifr_init(&ifr, tap);
	sin_set(&ifr.ifr_addr, IP_TAP);
	assert_int_equal(sock_ioctl(SIOCSIFADDR, &ifr), 0);
	sin_set(&ifr.ifr_netmask, 0xffffff00u);
	assert_int_equal(sock_ioctl(SIOCSIFNETMASK, &ifr), 0);
	if_set_up(tap, true);
	ifr_init(&ifr, tap);
	assert_int_equal(sock_ioctl(SIOCGIFHWADDR, &ifr), 0);
	memcpy(hmac, ifr.ifr_hwaddr.sa_data, 6);
	memset(&req, 0, sizeof(req));
	sin_set(&req.arp_pa, IP_GUEST);
	req.arp_ha.sa_family = ARPHRD_ETHER;
	memcpy(req.arp_ha.sa_data, gmac, 6);
	req.arp_flags = ATF_PERM | ATF_COM;
	snprintf(req.arp_dev, sizeof(req.arp_dev), "%s", tap);
	assert_int_equal(sock_ioctl(SIOCSARP, &req), 0);
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
