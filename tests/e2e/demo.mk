# make demo: real Xen 4.17 on emulated arm64 with one guest whose disk, network, console, i2c, rng,
# gpio and vsock are all served by one xen-virtiod (tests/e2e/demo.sh). Needs only Debian 12: the first step
# installs the host packages (the e2e harness's phase "host"), then builds or reuses the e2e
# environment (caches in ~/.cache/xen-virtiod-e2e). Leaves the terminal at the guest's shell:
# Ctrl-] leaves the guest's console, Ctrl-a x quits QEMU. DEMO_BATCH=1: non-interactive, exit 0
# only when every device showed its evidence. Output under build/demo.
.PHONY: demo
demo:
	@bash tests/e2e/demo.sh
