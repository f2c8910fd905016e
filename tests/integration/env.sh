# The environment of the real-kernel tests (sourced once by all.sh, or by vfio.sh / fault.sh
# when they run standalone). Argument: the L1 kernel kind (stock, iommufd or host).
# Uses: $BUILD/pinless (PINLESS_BUILD overrides the build dir), the guest initramfs, and the
# iommufd kernel as L2 kernel.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KIND=${1:-host}
BUILD=${PINLESS_BUILD:-$REPO/build}
source "$HERE/lib.sh"
source "$REPO/scripts/testbed.d/common.sh"
source "$REPO/scripts/testbed.d/kernels.sh"
PINLESS=${PINLESS:-$BUILD/pinless}
INITRD=${INITRD:-$BUILD/guest-images/initrd.cpio.gz}
L2_KERNEL=${L2_KERNEL:-$(tb_kernel_dir iommufd)/bzImage}
BASE_CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"
# In the testbed, L1's KVM runs on QEMU's emulated SVM, which does not intercept XSETBV:
# KVM never learns the guest's XCR0 and reports an XSAVE size that contradicts the guest's
# own computation ("XSAVE consistency problem"), and Linux then crashes in FPU init. QEMU as
# L2 VMM hits the same. L2 guests there run with noxsave (docs/testbed.md).
[ "${PINLESS_TESTBED:-0}" = 1 ] && BASE_CMDLINE+=" noxsave"
