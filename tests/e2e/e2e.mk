# make e2e: real Xen on emulated arm64 (tests/e2e/run.sh). Not part of `make check`.
# Caches live outside the repository (E2E_CACHE); build output under build/e2e.
.PHONY: e2e e2e-shell
e2e:
	@bash tests/e2e/run.sh

# The same environment, then a dom0 shell on the console (Ctrl-a x quits QEMU).
e2e-shell:
	@E2E_SHELL=1 bash tests/e2e/run.sh
