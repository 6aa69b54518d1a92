#!/bin/bash
# Phase "dtb": QEMU virt's own device tree (dumped once per QEMU version and machine options,
# cached), plus Xen's boot modules and command lines (per run: the initramfs size and the dom0
# arguments change). Usage: dtb.sh INITRD OUT.dtb "DOM0_EXTRA_ARGS"
set -euo pipefail
E2E_PHASE=dtb
. "$(dirname "$0")/../lib.sh"
initrd=$1 dtb=$2 dom0_extra=${3:-}

qver=$(dpkg-query -W -f='${Version}' qemu-system-arm)
key=$(key_of "qemu=$qver" "$E2E_MACHINE" "$E2E_CPU" "$E2E_SMP" "$E2E_MEM" "$(hash_files "$0")")
base=$(cache_dir dtb "$key")
if ! is_done "$base"; then
	mkdir -p "$base"
	qemu-system-aarch64 -machine "$E2E_MACHINE,dumpdtb=$base/virt.dtb" -cpu "$E2E_CPU" \
		-smp "$E2E_SMP" -m "$E2E_MEM" -nic none -nographic >/dev/null 2>&1 </dev/null || true
	[ -s "$base/virt.dtb" ] || die "qemu did not dump its device tree"
	mark_done "$base"
	log "dumped QEMU's device tree (qemu $qver)"
fi
cp "$base/virt.dtb" "$dtb"
size=$(stat -c %s "$initrd")
gpio=$(fdtget -l "$dtb" / | grep '^pl061@' | head -1 || true)
[ -z "$gpio" ] || fdtput -t s "$dtb" "/$gpio" status disabled
fdtput -t i "$dtb" /chosen '#address-cells' 2
fdtput -t i "$dtb" /chosen '#size-cells' 2
fdtput -t s "$dtb" /chosen xen,xen-bootargs "console=dtuart dom0_mem=1024M,max:1024M dom0_max_vcpus=2 bootscrub=0 $E2E_XEN_EXTRA"
fdtput -t s "$dtb" /chosen xen,dom0-bootargs "console=hvc0 earlycon=xen rdinit=/init $dom0_extra"
fdtput -c "$dtb" /chosen/module@60000000
fdtput -t s "$dtb" /chosen/module@60000000 compatible "multiboot,kernel" "multiboot,module"
fdtput -t x "$dtb" /chosen/module@60000000 reg 0 0x60000000 0 "$(printf '%x' "$(stat -c %s "$E2E_IMAGE")")"
fdtput -c "$dtb" /chosen/module@64000000
fdtput -t s "$dtb" /chosen/module@64000000 compatible "multiboot,ramdisk" "multiboot,module"
fdtput -t x "$dtb" /chosen/module@64000000 reg 0 0x64000000 0 "$(printf '%x' "$size")"
log "device tree $dtb (initrd $size bytes)"
