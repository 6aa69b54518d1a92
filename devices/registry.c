/*
 * The device modules this daemon knows: one line per module in registry[]. A module defines
 * `const struct vdev_ops vdev_<type>_ops` in its own file and adds its line here.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "config/config.h"
#include "devices/device.h"
#include "devices/virtio_mmio.h"

extern const struct vdev_ops vdev_rng_ops;
extern const struct vdev_ops vdev_block_ops;
extern const struct vdev_ops vdev_i2c_ops;
extern const struct vdev_ops vdev_console_ops;
extern const struct vdev_ops vdev_net_ops;
extern const struct vdev_ops vdev_gpio_ops;
extern const struct vdev_ops vdev_vsock_ops;

static const struct registry_entry {
	enum config_dev_type type;
	const struct vdev_ops *ops;
} registry[] = {
	{ DEV_RNG, &vdev_rng_ops },
	{ DEV_BLOCK, &vdev_block_ops },
	{ DEV_I2C, &vdev_i2c_ops },
	{ DEV_CONSOLE, &vdev_console_ops },
	{ DEV_NET, &vdev_net_ops },
	{ DEV_GPIO, &vdev_gpio_ops },
	{ DEV_VSOCK, &vdev_vsock_ops },
};

#define REGISTRY_LEN (sizeof(registry) / sizeof(registry[0]))

const struct vdev_ops *vdev_ops_by_type(const char *type)
{
	for (size_t i = 0; type && i < REGISTRY_LEN; i++)
		if (strcmp(registry[i].ops->type, type) == 0)
			return registry[i].ops;
	return NULL;
}

const struct vdev_ops *vdev_ops_by_id(uint32_t device_id)
{
	for (size_t i = 0; i < REGISTRY_LEN; i++)
		if (registry[i].ops->device_id == device_id)
			return registry[i].ops;
	return NULL;
}

static const struct vdev_ops *registry_by_config(enum config_dev_type type)
{
	for (size_t i = 0; i < REGISTRY_LEN; i++)
		if (registry[i].type == type)
			return registry[i].ops;
	return NULL;
}

int vdev_create(struct vdev_host *host, const struct config_device *cfg, struct vdev **out)
{
	const struct vdev_ops *ops = registry_by_config(cfg->type);
	int rc;

	*out = NULL;
	if (!ops) {
		log_err("device \"%s\" (line %d): no module for device type %d", cfg->name,
			cfg->line, (int)cfg->type);
		return -ENOENT;
	}
	rc = ops->create(host, cfg, out);
	if (rc < 0)
		*out = NULL;
	return rc;
}

void vdev_destroy(struct vdev *d)
{
	if (!d)
		return;
	/*
	 * The device's reset hook runs and the rings are unmapped before the device frees itself;
	 * a device left to a next instance (vdev_leave()) is not: its registers are the guest's.
	 */
	if (!d->leaving)
		vmmio_reset(d);
	d->ops->destroy(d);
}
