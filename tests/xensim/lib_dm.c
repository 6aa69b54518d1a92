/* libxendevicemodel, simulated: ioreq servers and ranges live in the hub, IRQ lines in the
 * domain's shared control page (an injection wakes the guest side's futex). */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <xendevicemodel.h>

#include "tests/xensim/client.h"
#include "tests/xensim/fault.h"

struct xendevicemodel_handle {
	struct xsim_pch p;
};

xendevicemodel_handle *xendevicemodel_open(struct xentoollog_logger *logger,
					   unsigned int open_flags)
{
	(void)logger;
	(void)open_flags;
	return xsim_pch_open(sizeof(xendevicemodel_handle));
}

int xendevicemodel_close(xendevicemodel_handle *dmod)
{
	return dmod ? xsim_pch_close(&dmod->p) : 0;
}

static int dm_allowed(xendevicemodel_handle *h, domid_t domid)
{
	if (xsim_fault("no_dm_op")) {
		errno = ENOSYS;   /* no dm_op hypercall: Xen without CONFIG_IOREQ_SERVER */
		return -1;
	}
	return xsim_pch_allowed(&h->p, domid) ? 0 : -1;
}

/* One hub operation on (domid, id); returns 0 or -1 with errno, as libxendevicemodel. */
static int dm_call(xendevicemodel_handle *h, uint32_t op, domid_t domid, uint32_t a, uint32_t b,
		   uint64_t x, uint64_t y, uint32_t *out_a)
{
	struct xsim_msg *m;
	int rc;

	if (dm_allowed(h, domid) < 0)
		return -1;
	m = xsim_msg_new(op, domid);
	if (!m)
		return -1;
	m->a = a;
	m->b = b;
	m->x = x;
	m->y = y;
	rc = xsim_rpc(h->p.conn, m, -1, NULL, 0);
	if (rc == 0 && out_a)
		*out_a = m->a;
	free(m);
	return rc < 0 ? -1 : 0;
}

int xendevicemodel_nr_vcpus(xendevicemodel_handle *dmod, domid_t domid, unsigned int *vcpus)
{
	struct xsim_cdom *d;

	if (dm_allowed(dmod, domid) < 0 || !(d = xsim_pch_dom(&dmod->p, domid)))
		return -1;
	*vcpus = d->ctl->nr_vcpus;
	return 0;
}

int xendevicemodel_create_ioreq_server(xendevicemodel_handle *dmod, domid_t domid,
				       int handle_bufioreq, ioservid_t *id)
{
	uint32_t out;

	if (dm_call(dmod, XSIM_OP_CREATE_SERVER, domid, (uint32_t)handle_bufioreq, 0, 0, 0,
		    &out) < 0)
		return -1;
	*id = (ioservid_t)out;
	return 0;
}

int xendevicemodel_set_ioreq_server_state(xendevicemodel_handle *dmod, domid_t domid,
					  ioservid_t id, int enabled)
{
	return dm_call(dmod, XSIM_OP_SERVER_STATE, domid, id, enabled != 0, 0, 0, NULL);
}

int xendevicemodel_map_io_range_to_ioreq_server(xendevicemodel_handle *dmod, domid_t domid,
						ioservid_t id, int is_mmio, uint64_t start,
						uint64_t end)
{
	return dm_call(dmod, XSIM_OP_MAP_RANGE, domid, id, is_mmio != 0, start, end, NULL);
}

int xendevicemodel_unmap_io_range_from_ioreq_server(xendevicemodel_handle *dmod, domid_t domid,
						    ioservid_t id, int is_mmio, uint64_t start,
						    uint64_t end)
{
	return dm_call(dmod, XSIM_OP_UNMAP_RANGE, domid, id, is_mmio != 0, start, end, NULL);
}

int xendevicemodel_destroy_ioreq_server(xendevicemodel_handle *dmod, domid_t domid,
					ioservid_t id)
{
	return dm_call(dmod, XSIM_OP_DESTROY_SERVER, domid, id, 0, 0, 0, NULL);
}

int xendevicemodel_set_irq_level(xendevicemodel_handle *dmod, domid_t domid, unsigned int irq,
				 unsigned int level)
{
	struct xsim_cdom *d;

	if (dm_allowed(dmod, domid) < 0 || !(d = xsim_pch_dom(&dmod->p, domid)))
		return -1;
	/* Arm's DM op injects SPIs only. */
	if (irq < 32 || irq >= XSIM_NR_IRQS || level > 1) {
		errno = EINVAL;
		return -1;
	}
	xsim_irq_inject(d->ctl, irq, level);
	return 0;
}

int xendevicemodel_restrict(xendevicemodel_handle *dmod, domid_t domid)
{
	return xsim_pch_restrict(&dmod->p, domid, XSIM_RESTRICTED_DM);
}
