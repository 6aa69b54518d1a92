/*
 * Tests and benchmarks that create taps run in a network namespace of their own: the taps live
 * there and vanish with it, whatever the test leaves behind.
 */
#ifndef XVD_TESTS_NETNS_H
#define XVD_TESTS_NETNS_H

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static inline void netns_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/*
 * Run `run` in a child in a new network namespace with quiet links (IPv6 off: no router
 * solicitations on a tap) and IPv4 forwarding on; returns run's result. Without a namespace to
 * be had, the child says so (name: who asks) and returns no_ns() when given, else 77 (skip).
 */
static inline int netns_run(const char *name, int (*run)(void), int (*no_ns)(void))
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return 1;
	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0) {
			fprintf(stderr, "%s: no network namespace: %s\n", name, strerror(errno));
			_exit(no_ns ? no_ns() : 77);
		}
		netns_write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
		netns_write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
		netns_write("/proc/sys/net/ipv4/ip_forward", "1");
		_exit(run());
	}
	if (waitpid(pid, &st, 0) < 0)
		return 1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* ---- interfaces, by ioctl (no shelling out); each returns 0 or -1 with errno ---- */

static inline int netns_ioctl(unsigned long req, void *arg)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = s < 0 ? -1 : ioctl(s, req, arg);

	if (s >= 0)
		close(s);
	return rc;
}

static inline void netns_ifr(struct ifreq *ifr, const char *name)
{
	memset(ifr, 0, sizeof(*ifr));
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", name);
}

/* An IPv4 address (host order) into a struct sockaddr field. */
static inline void netns_sin(struct sockaddr *sa, uint32_t ip)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(ip) };

	memcpy(sa, &sin, sizeof(sin));
}

static inline int netns_if_up(const char *name, bool up)
{
	struct ifreq ifr;

	netns_ifr(&ifr, name);
	if (netns_ioctl(SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags = (short)(up ? ifr.ifr_flags | IFF_UP : ifr.ifr_flags & ~IFF_UP);
	return netns_ioctl(SIOCSIFFLAGS, &ifr);
}

/* Address ip (and netmask mask, unless 0: the class's) on name, and the link up. */
static inline int netns_if_addr(const char *name, uint32_t ip, uint32_t mask)
{
	struct ifreq ifr;

	netns_ifr(&ifr, name);
	netns_sin(&ifr.ifr_addr, ip);
	if (netns_ioctl(SIOCSIFADDR, &ifr) < 0)
		return -1;
	netns_sin(&ifr.ifr_netmask, mask);
	if (mask && netns_ioctl(SIOCSIFNETMASK, &ifr) < 0)
		return -1;
	return netns_if_up(name, true);
}

static inline int netns_if_hwaddr(const char *name, uint8_t mac[6])
{
	struct ifreq ifr;

	netns_ifr(&ifr, name);
	if (netns_ioctl(SIOCGIFHWADDR, &ifr) < 0)
		return -1;
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return 0;
}

/* ip (host order) at mac on dev, as a permanent neighbour. */
static inline int netns_arp_static(const char *dev, uint32_t ip, const uint8_t mac[6])
{
	struct arpreq req;

	memset(&req, 0, sizeof(req));
	netns_sin(&req.arp_pa, ip);
	req.arp_ha.sa_family = ARPHRD_ETHER;
	memcpy(req.arp_ha.sa_data, mac, 6);
	req.arp_flags = ATF_PERM | ATF_COM;
	snprintf(req.arp_dev, sizeof(req.arp_dev), "%s", dev);
	return netns_ioctl(SIOCSARP, &req);
}

#endif
