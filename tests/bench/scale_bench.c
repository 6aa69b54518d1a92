/*
 * 50 guests at once on one xensim hub: one sim daemon per guest (each serving an rng), all
 * started back to back, then every READY=1 collected by polling all notify sockets together.
 * Each guest then initialises its rng and reads 32 bytes, so READY means serving.
 *
 *   BENCH scale_50_ready_all   first start to the last READY=1, seconds. Baseline 5 s (the
 *                              target); ratio = 5 / value.
 *   BENCH scale_50_ready_max   the slowest guest, its own start to its READY=1, seconds (info).
 *   BENCH scale_50_rss_total   sum over the 50 daemons of VmRSS minus guest mappings, MiB; the
 *                              baseline is 50 x 8 MiB (the per-instance target).
 *   BENCH scale_50_private_total  sum of private memory outside guest mappings, MiB (what the
 *                              50 instances cost together; shared library pages counted once
 *                              in the system, not here), baseline 50 x 8 MiB.
 * Data: $BENCH_OUT/scale_ready.dat (guest, start offset, ready offset, seconds).
 *
 * Environment: BENCH_SCALE_N (guests, default 50).
 */
#include <poll.h>
#include <sys/socket.h>

#include "devices/device.h"
#include "tests/bench/bench_common.h"

#define MAX_GUESTS 128

struct sguest {
	struct xsim_dom *dom;
	struct xsim_daemon dm;
	double t_start, t_ready;
};

static int start_one(struct xsim_hub *hub, struct sguest *g, unsigned i)
{
	char name[16], ini[192], path[512];
	const char *args[] = { "--foreground", "--config", path, "--log-level", "warning", NULL };

	snprintf(name, sizeof(name), "g%u", i);
	g->dm.pid = -1;
	g->dom = xsim_dom_create(hub, &(struct xsim_dom_opts){ .name = name, .ram_mib = 8 });
	if (!g->dom)
		return -1;
	snprintf(path, sizeof(path), "%s/%s.ini", xsim_hub_dir(hub), name);
	snprintf(ini, sizeof(ini), "[guest]\nname = %s\ndiscovery = explicit\n[rng]\n"
		 "mmio = 0x%llx\nirq = %u\n", name, (unsigned long long)BENCH_WIN(0), BENCH_SPI(0));
	if (bench_write_file(path, ini) < 0)
		return -1;
	g->t_start = bench_now();
	return xsim_daemon_start(hub, &g->dm, XVD_SIM_DAEMON, name, args, 0);
}

/* Poll every notify socket until all are READY; 0, or -1 after timeout_s. */
static int wait_all_ready(struct sguest *g, unsigned n, double timeout_s)
{
	double deadline = bench_now() + timeout_s;
	struct pollfd p[MAX_GUESTS];
	unsigned left = n;
	char buf[512];

	while (left && bench_now() < deadline) {
		unsigned idx[MAX_GUESTS], np = 0;

		for (unsigned i = 0; i < n; i++)
			if (g[i].t_ready == 0) {
				p[np] = (struct pollfd){ .fd = g[i].dm.notify_fd, .events = POLLIN };
				idx[np++] = i;
			}
		if (poll(p, np, 100) <= 0)
			continue;
		for (unsigned k = 0; k < np; k++) {
			ssize_t len;

			if (!(p[k].revents & POLLIN))
				continue;
			len = recv(p[k].fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
			if (len <= 0)
				continue;
			buf[len] = 0;
			if (strstr(buf, "READY=1")) {
				g[idx[k]].t_ready = bench_now();
				left--;
			}
		}
	}
	return left ? -1 : 0;
}

static int use_rng(struct sguest *g)
{
	struct xsim_vio vio;
	struct vdrv_mem mem;
	struct vdrv drv;
	struct vdrv_buf b = { .len = 32, .write = true };

	memset(&drv, 0, sizeof(drv));
	xsim_vio_init(&vio, g->dom, 0, BENCH_WIN(0), BENCH_SPI(0));
	if (xsim_vmem_init(&mem, g->dom, BENCH_RAM, 1u << 20, false) < 0 ||
	    vdrv_init(&drv, &vio.io, &mem, VIRTIO_BIT(VIRTIO_F_VERSION_1), 1, 16) < 0)
		return -1;
	b.gpa = vdrv_alloc(&mem, 32, 16, NULL);
	return vdrv_transfer(&drv, 0, &b, 1, false, 10000) == 32 ? 0 : -1;
}

int main(void)
{
	unsigned n = (unsigned)bench_env_u64("BENCH_SCALE_N", 50);
	struct sguest *g = calloc(MAX_GUESTS, sizeof(*g));
	struct xsim_hub *hub = xsim_hub_start();
	double t0, t_all = 0, t_max = 0, rss = 0, priv = 0;
	char name[64];
	int rc = 1;
	FILE *dat;

	if (n < 1 || n > MAX_GUESTS)
		n = 50;
	if (!g || !hub)
		goto out;
	t0 = bench_now();
	for (unsigned i = 0; i < n; i++)
		if (start_one(hub, &g[i], i) < 0) {
			fprintf(stderr, "scale_bench: guest %u did not start\n", i);
			goto out;
		}
	if (wait_all_ready(g, n, 60) < 0) {
		fprintf(stderr, "scale_bench: not every daemon became ready in 60 s\n");
		goto out;
	}
	dat = bench_data_file("scale_ready.dat");
	if (dat)
		fprintf(dat, "# guest start_s ready_s start_to_ready_s\n");
	for (unsigned i = 0; i < n; i++) {
		double own = g[i].t_ready - g[i].t_start;

		t_all = g[i].t_ready - t0 > t_all ? g[i].t_ready - t0 : t_all;
		t_max = own > t_max ? own : t_max;
		if (dat)
			fprintf(dat, "%u %.4f %.4f %.4f\n", i, g[i].t_start - t0, g[i].t_ready - t0,
				own);
	}
	if (dat)
		fclose(dat);
	for (unsigned i = 0; i < n; i++) {
		struct bench_mem m;

		if (use_rng(&g[i]) < 0) {
			fprintf(stderr, "scale_bench: guest %u: rng transfer failed\n", i);
			goto out;
		}
		if (bench_mem_of(g[i].dm.pid, &m) == 0) {
			rss += m.own / 1024.0;
			priv += m.private_own / 1024.0;
		}
	}
	snprintf(name, sizeof(name), "scale_%u_ready_all", n);
	bench_line(name, t_all, "s", 5.0, false);
	snprintf(name, sizeof(name), "scale_%u_ready_max", n);
	bench_line(name, t_max, "s", 5.0, false);
	snprintf(name, sizeof(name), "scale_%u_rss_total", n);
	bench_line(name, rss, "MiB", 8.0 * n, false);
	snprintf(name, sizeof(name), "scale_%u_private_total", n);
	bench_line(name, priv, "MiB", 8.0 * n, false);
	rc = 0;
out:
	if (rc)
		bench_skip("scale_50_ready_all", "setup failed");
	for (unsigned i = 0; g && i < n; i++)
		if (g[i].dom)
			xsim_dom_destroy(g[i].dom);
	for (unsigned i = 0; g && i < n; i++)
		if (g[i].dm.pid > 0)
			xsim_daemon_stop(&g[i].dm);
	xsim_hub_stop(hub);
	free(g);
	return rc;
}
