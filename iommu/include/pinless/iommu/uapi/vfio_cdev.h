/*
 * VFIO device cdev (/dev/vfio/devices/vfioN) <-> iommufd ioctls, Linux >= 6.6, as pinless
 * uses them: defined here when <linux/vfio.h> lacks them (bookworm's 6.1 has none), written
 * from the Linux 7.2 uAPI documentation (docs: /work/shared/IOMMUFD.md), with layout checks
 * either way. Included by uapi/iommufd.h; plain C (C11) and C++ compatible.
 */
#ifndef PINLESS_IOMMU_UAPI_VFIO_CDEV_H
#define PINLESS_IOMMU_UAPI_VFIO_CDEV_H

#include <stddef.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/version.h>
#include <linux/vfio.h>

#ifndef VFIO_DEVICE_BIND_IOMMUFD
struct vfio_device_bind_iommufd {
	__u32 argsz;
	__u32 flags;
#define VFIO_DEVICE_BIND_FLAG_TOKEN (1 << 0)
	__s32 iommufd;
	__u32 out_devid;
	__aligned_u64 token_uuid_ptr; /* with VFIO_DEVICE_BIND_FLAG_TOKEN (>= 6.17) */
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif

#ifndef VFIO_DEVICE_ATTACH_IOMMUFD_PT
struct vfio_device_attach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
#define VFIO_DEVICE_ATTACH_PASID (1 << 0)
	__u32 pt_id; /* in: IOAS or HWPT; out: the attached HWPT */
	__u32 pasid; /* with VFIO_DEVICE_ATTACH_PASID (>= 6.13) */
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
#endif

#ifndef VFIO_DEVICE_DETACH_IOMMUFD_PT
struct vfio_device_detach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
#define VFIO_DEVICE_DETACH_PASID (1 << 0)
	__u32 pasid; /* with VFIO_DEVICE_DETACH_PASID (>= 6.13) */
};
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)
#endif

/* Layout checks (x86_64 values from the 7.2 uapi headers). */
#ifdef __cplusplus
#define PINLESS_VFIO_CDEV_ASSERT(expr) static_assert(expr, #expr)
#else
#define PINLESS_VFIO_CDEV_ASSERT(expr) _Static_assert(expr, #expr)
#endif

PINLESS_VFIO_CDEV_ASSERT(VFIO_DEVICE_BIND_IOMMUFD == 0x3b76);
PINLESS_VFIO_CDEV_ASSERT(VFIO_DEVICE_ATTACH_IOMMUFD_PT == 0x3b77);
PINLESS_VFIO_CDEV_ASSERT(VFIO_DEVICE_DETACH_IOMMUFD_PT == 0x3b78);
/* VFIO cdev structs grew over time (token_uuid_ptr, pasid): check the common
 * prefix, and the full 7.2 size when we defined them ourselves. */
PINLESS_VFIO_CDEV_ASSERT(offsetof(struct vfio_device_bind_iommufd, iommufd) == 8);
PINLESS_VFIO_CDEV_ASSERT(offsetof(struct vfio_device_bind_iommufd, out_devid) == 12);
PINLESS_VFIO_CDEV_ASSERT(sizeof(struct vfio_device_bind_iommufd) >= 16);
PINLESS_VFIO_CDEV_ASSERT(offsetof(struct vfio_device_attach_iommufd_pt, pt_id) == 8);
PINLESS_VFIO_CDEV_ASSERT(sizeof(struct vfio_device_attach_iommufd_pt) >= 12);
PINLESS_VFIO_CDEV_ASSERT(sizeof(struct vfio_device_detach_iommufd_pt) >= 8);
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 6, 0) /* our own definitions above */
PINLESS_VFIO_CDEV_ASSERT(sizeof(struct vfio_device_bind_iommufd) == 24);
PINLESS_VFIO_CDEV_ASSERT(sizeof(struct vfio_device_attach_iommufd_pt) == 16);
PINLESS_VFIO_CDEV_ASSERT(sizeof(struct vfio_device_detach_iommufd_pt) == 12);
#endif

#endif /* PINLESS_IOMMU_UAPI_VFIO_CDEV_H */
