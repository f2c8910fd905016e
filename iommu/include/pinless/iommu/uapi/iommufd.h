/*
 * iommufd and VFIO-cdev userspace ABI, as pinless uses it.
 *
 * If the system's <linux/iommufd.h> is new enough (uapi headers >= 7.0, which
 * have the fault queue and the 7.x iommu_hw_info layout) it is used as is.
 * Otherwise (Debian bookworm ships 6.1 headers without iommufd.h) this file
 * provides its own definitions, written from the Linux 7.2 uAPI documentation
 * (docs: /work/shared/IOMMUFD.md). Only the subset pinless needs is defined:
 * IOAS alloc/map/unmap/copy/iova_ranges/allow_iovas, option, vfio_ioas,
 * hwpt_alloc, hw_info, fault queue (alloc, pgfault record, page response),
 * destroy. All ioctl command numbers are listed.
 *
 * VFIO cdev ioctls (BIND_IOMMUFD, ATTACH/DETACH_IOMMUFD_PT, kernel >= 6.6)
 * come from uapi/vfio_cdev.h, included below.
 *
 * The static asserts at the end check sizes and key offsets either way, so a
 * system header with a different layout fails the build instead of the ioctl.
 * Plain C (C11) and C++ compatible.
 */
#ifndef PINLESS_IOMMU_UAPI_IOMMUFD_H
#define PINLESS_IOMMU_UAPI_IOMMUFD_H

#include <stddef.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/version.h>
#include <linux/vfio.h>

#if __has_include(<linux/iommufd.h>) && defined(LINUX_VERSION_CODE) && \
    LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0)
#define PINLESS_IOMMUFD_SYSTEM_HEADER 1
#include <linux/iommufd.h>
#else
#define PINLESS_IOMMUFD_SYSTEM_HEADER 0

#ifdef _UAPI_IOMMUFD_H
#error "an old <linux/iommufd.h> was included before pinless/iommu/uapi/iommufd.h; include ours only"
#endif
/* Same include guard as the kernel header: a later #include <linux/iommufd.h>
 * becomes a no-op instead of redefining everything. */
#define _UAPI_IOMMUFD_H

#define IOMMUFD_TYPE (';')

enum {
	IOMMUFD_CMD_BASE = 0x80,
	IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE,
	IOMMUFD_CMD_IOAS_ALLOC = 0x81,
	IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82,
	IOMMUFD_CMD_IOAS_COPY = 0x83,
	IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84,
	IOMMUFD_CMD_IOAS_MAP = 0x85,
	IOMMUFD_CMD_IOAS_UNMAP = 0x86,
	IOMMUFD_CMD_OPTION = 0x87,
	IOMMUFD_CMD_VFIO_IOAS = 0x88,
	IOMMUFD_CMD_HWPT_ALLOC = 0x89,
	IOMMUFD_CMD_GET_HW_INFO = 0x8a,
	IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8b,
	IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8c,
	IOMMUFD_CMD_HWPT_INVALIDATE = 0x8d,
	IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8e,
	IOMMUFD_CMD_IOAS_MAP_FILE = 0x8f,
	IOMMUFD_CMD_VIOMMU_ALLOC = 0x90,
	IOMMUFD_CMD_VDEVICE_ALLOC = 0x91,
	IOMMUFD_CMD_IOAS_CHANGE_PROCESS = 0x92,
	IOMMUFD_CMD_VEVENTQ_ALLOC = 0x93,
	IOMMUFD_CMD_HW_QUEUE_ALLOC = 0x94,
};

/* Every ioctl is _IO(';', nr): no size in the number; the first u32 of each
 * struct is its size as userspace knows it. */

/* IOMMU_DESTROY: destroy any object by ID. */
struct iommu_destroy {
	__u32 size;
	__u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)

/* IOMMU_IOAS_ALLOC: a new I/O address space. */
struct iommu_ioas_alloc {
	__u32 size;
	__u32 flags; /* must be 0 */
	__u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)

/* An inclusive IOVA range [start, last]. */
struct iommu_iova_range {
	__aligned_u64 start;
	__aligned_u64 last;
};

/* IOMMU_IOAS_IOVA_RANGES: usable ranges; EMSGSIZE + num_iovas if too small. */
struct iommu_ioas_iova_ranges {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas; /* in: array length; out: total ranges */
	__u32 __reserved;
	__aligned_u64 allowed_iovas; /* user pointer to struct iommu_iova_range[] */
	__aligned_u64 out_iova_alignment;
};
#define IOMMU_IOAS_IOVA_RANGES _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES)

/* IOMMU_IOAS_ALLOW_IOVAS: promise ranges stay usable (replaces the list). */
struct iommu_ioas_allow_iovas {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 __reserved;
	__aligned_u64 allowed_iovas; /* user pointer to struct iommu_iova_range[] */
};
#define IOMMU_IOAS_ALLOW_IOVAS _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS)

enum iommufd_ioas_map_flags {
	IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
	IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
	IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

/* IOMMU_IOAS_MAP: map user memory; pins when a domain is attached. */
struct iommu_ioas_map {
	__u32 size;
	__u32 flags; /* enum iommufd_ioas_map_flags; READABLE and/or WRITEABLE */
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova; /* in with FIXED_IOVA, else out */
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)

/* IOMMU_IOAS_MAP_FILE (>= 6.14): map a memfd/dma-buf range. */
struct iommu_ioas_map_file {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__s32 fd;
	__aligned_u64 start; /* file offset */
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP_FILE)

/* IOMMU_IOAS_COPY: copy an exact existing mapping into another IOAS. */
struct iommu_ioas_copy {
	__u32 size;
	__u32 flags; /* FIXED_IOVA / WRITEABLE / READABLE */
	__u32 dst_ioas_id;
	__u32 src_ioas_id;
	__aligned_u64 length;
	__aligned_u64 dst_iova;
	__aligned_u64 src_iova;
};
#define IOMMU_IOAS_COPY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY)

/* IOMMU_IOAS_UNMAP: unmap whole mappings inside [iova, iova+length). */
struct iommu_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length; /* in: range; out: bytes unmapped */
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)

enum iommufd_option {
	IOMMU_OPTION_RLIMIT_MODE = 0,
	IOMMU_OPTION_HUGE_PAGES = 1,
};

enum iommufd_option_ops {
	IOMMU_OPTION_OP_SET = 0,
	IOMMU_OPTION_OP_GET = 1,
};

/* IOMMU_OPTION: get/set a ctx-wide or per-object option. */
struct iommu_option {
	__u32 size;
	__u32 option_id; /* enum iommufd_option */
	__u16 op;        /* enum iommufd_option_ops */
	__u16 __reserved;
	__u32 object_id; /* 0 for ctx-wide options */
	__aligned_u64 val64;
};
#define IOMMU_OPTION _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION)

enum iommufd_vfio_ioas_op {
	IOMMU_VFIO_IOAS_GET = 0,
	IOMMU_VFIO_IOAS_SET = 1,
	IOMMU_VFIO_IOAS_CLEAR = 2,
};

/* IOMMU_VFIO_IOAS: the IOAS used by the VFIO type1 compatibility layer. */
struct iommu_vfio_ioas {
	__u32 size;
	__u32 ioas_id;
	__u16 op; /* enum iommufd_vfio_ioas_op */
	__u16 __reserved;
};
#define IOMMU_VFIO_IOAS _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VFIO_IOAS)

enum iommufd_hwpt_alloc_flags {
	IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0,
	IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1,
	IOMMU_HWPT_FAULT_ID_VALID = 1 << 2,
	IOMMU_HWPT_ALLOC_PASID = 1 << 3,
};

enum iommu_hwpt_vtd_s1_flags {
	IOMMU_VTD_S1_SRE = 1 << 0,
	IOMMU_VTD_S1_EAFE = 1 << 1,
	IOMMU_VTD_S1_WPE = 1 << 2,
};

/* Intel VT-d stage-1 (guest) page table for a nested HWPT. */
struct iommu_hwpt_vtd_s1 {
	__aligned_u64 flags; /* enum iommu_hwpt_vtd_s1_flags */
	__aligned_u64 pgtbl_addr;
	__u32 addr_width;
	__u32 __reserved;
};

enum iommu_hwpt_data_type {
	IOMMU_HWPT_DATA_NONE = 0,
	IOMMU_HWPT_DATA_VTD_S1 = 1,
	IOMMU_HWPT_DATA_ARM_SMMUV3 = 2,
	IOMMU_HWPT_DATA_AMD_GUEST = 3,
};

/* IOMMU_HWPT_ALLOC: a paging HWPT (pt_id = IOAS) or nested HWPT. */
struct iommu_hwpt_alloc {
	__u32 size;
	__u32 flags; /* enum iommufd_hwpt_alloc_flags */
	__u32 dev_id;
	__u32 pt_id; /* IOAS, nest-parent HWPT or vIOMMU */
	__u32 out_hwpt_id;
	__u32 __reserved;
	__u32 data_type; /* enum iommu_hwpt_data_type */
	__u32 data_len;
	__aligned_u64 data_uptr;
	__u32 fault_id; /* valid with IOMMU_HWPT_FAULT_ID_VALID */
	__u32 __reserved2;
};
#define IOMMU_HWPT_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC)

enum iommu_hw_info_vtd_flags {
	IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0,
};

/* IOMMU_GET_HW_INFO data for IOMMU_HW_INFO_TYPE_INTEL_VTD. */
struct iommu_hw_info_vtd {
	__u32 flags;
	__u32 __reserved;
	__aligned_u64 cap_reg;
	__aligned_u64 ecap_reg;
};

/* IOMMU_GET_HW_INFO data for IOMMU_HW_INFO_TYPE_AMD (7.x). */
struct iommu_hw_info_amd {
	__aligned_u64 efr;
	__aligned_u64 efr2;
};

enum iommu_hw_info_type {
	IOMMU_HW_INFO_TYPE_NONE = 0,
	IOMMU_HW_INFO_TYPE_DEFAULT = 0,
	IOMMU_HW_INFO_TYPE_INTEL_VTD = 1,
	IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2,
	IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = 3,
	IOMMU_HW_INFO_TYPE_AMD = 4,
};

enum iommufd_hw_capabilities {
	IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0,
	IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1,
	IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2,
	IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1 << 3,
};

enum iommufd_hw_info_flags {
	IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0,
};

/* IOMMU_GET_HW_INFO: IOMMU facts for a bound device. */
struct iommu_hw_info {
	__u32 size;
	__u32 flags; /* enum iommufd_hw_info_flags */
	__u32 dev_id;
	__u32 data_len; /* in: buffer size; out: bytes the kernel has */
	__aligned_u64 data_uptr;
	union {
		__u32 in_data_type;  /* with IOMMU_HW_INFO_FLAG_INPUT_TYPE */
		__u32 out_data_type; /* enum iommu_hw_info_type */
	};
	__u8 out_max_pasid_log2;
	__u8 __reserved[3];
	__aligned_u64 out_capabilities; /* enum iommufd_hw_capabilities */
};
#define IOMMU_GET_HW_INFO _IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO)

enum iommu_hwpt_pgfault_flags {
	IOMMU_PGFAULT_FLAGS_PASID_VALID = (1 << 0),
	IOMMU_PGFAULT_FLAGS_LAST_PAGE = (1 << 1),
};

enum iommu_hwpt_pgfault_perm {
	IOMMU_PGFAULT_PERM_READ = (1 << 0),
	IOMMU_PGFAULT_PERM_WRITE = (1 << 1),
	IOMMU_PGFAULT_PERM_EXEC = (1 << 2),
	IOMMU_PGFAULT_PERM_PRIV = (1 << 3),
};

/* One record read() from a fault queue fd (40 bytes; read in multiples). */
struct iommu_hwpt_pgfault {
	__u32 flags;  /* enum iommu_hwpt_pgfault_flags */
	__u32 dev_id; /* iommufd device ID */
	__u32 pasid;
	__u32 grpid; /* PCIe page request group index */
	__u32 perm;  /* enum iommu_hwpt_pgfault_perm */
	__u32 __reserved;
	__aligned_u64 addr; /* faulting IOVA */
	__u32 length;       /* prefetch hint, currently 0 */
	__u32 cookie;       /* same for all records of a group; echo it once */
};

enum iommufd_page_response_code {
	IOMMUFD_PAGE_RESP_SUCCESS = 0,
	IOMMUFD_PAGE_RESP_INVALID = 1,
};

/* One response write()n to a fault queue fd (8 bytes; write in multiples). */
struct iommu_hwpt_page_response {
	__u32 cookie;
	__u32 code; /* enum iommufd_page_response_code */
};

/* IOMMU_FAULT_QUEUE_ALLOC: a fault object and its fd. */
struct iommu_fault_alloc {
	__u32 size;
	__u32 flags; /* must be 0 */
	__u32 out_fault_id;
	__u32 out_fault_fd;
};
#define IOMMU_FAULT_QUEUE_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_FAULT_QUEUE_ALLOC)

#endif /* own iommufd definitions */

#include "pinless/iommu/uapi/vfio_cdev.h"

/* Layout checks (x86_64 values from the 7.2 uapi headers). */
#ifdef __cplusplus
#define PINLESS_UAPI_ASSERT(expr) static_assert(expr, #expr)
#else
#define PINLESS_UAPI_ASSERT(expr) _Static_assert(expr, #expr)
#endif

PINLESS_UAPI_ASSERT(IOMMU_DESTROY == 0x3b80);
PINLESS_UAPI_ASSERT(IOMMU_IOAS_ALLOC == 0x3b81);
PINLESS_UAPI_ASSERT(IOMMU_IOAS_ALLOW_IOVAS == 0x3b82);
PINLESS_UAPI_ASSERT(IOMMU_IOAS_COPY == 0x3b83);
PINLESS_UAPI_ASSERT(IOMMU_IOAS_IOVA_RANGES == 0x3b84);
PINLESS_UAPI_ASSERT(IOMMU_IOAS_MAP == 0x3b85);
PINLESS_UAPI_ASSERT(IOMMU_IOAS_UNMAP == 0x3b86);
PINLESS_UAPI_ASSERT(IOMMU_OPTION == 0x3b87);
PINLESS_UAPI_ASSERT(IOMMU_VFIO_IOAS == 0x3b88);
PINLESS_UAPI_ASSERT(IOMMU_HWPT_ALLOC == 0x3b89);
PINLESS_UAPI_ASSERT(IOMMU_GET_HW_INFO == 0x3b8a);
PINLESS_UAPI_ASSERT(IOMMU_FAULT_QUEUE_ALLOC == 0x3b8e);
PINLESS_UAPI_ASSERT(IOMMU_IOAS_MAP_FILE == 0x3b8f);

PINLESS_UAPI_ASSERT(sizeof(struct iommu_destroy) == 8);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_ioas_alloc) == 12);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_alloc, out_ioas_id) == 8);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_iova_range) == 16);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_ioas_iova_ranges) == 32);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_iova_ranges, allowed_iovas) == 16);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_iova_ranges, out_iova_alignment) == 24);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_ioas_allow_iovas) == 24);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_allow_iovas, allowed_iovas) == 16);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_ioas_map) == 40);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_map, user_va) == 16);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_map, length) == 24);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_map, iova) == 32);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_ioas_map_file) == 40);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_map_file, fd) == 12);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_map_file, iova) == 32);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_ioas_copy) == 40);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_copy, length) == 16);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_copy, src_iova) == 32);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_ioas_unmap) == 24);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_unmap, iova) == 8);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_ioas_unmap, length) == 16);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_option) == 24);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_option, op) == 8);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_option, object_id) == 12);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_option, val64) == 16);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_vfio_ioas) == 12);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_vfio_ioas, op) == 8);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_hwpt_vtd_s1) == 24);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_hwpt_alloc) == 48);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_alloc, out_hwpt_id) == 16);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_alloc, __reserved) == 20);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_alloc, data_type) == 24);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_alloc, data_uptr) == 32);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_alloc, fault_id) == 40);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_hw_info_vtd) == 24);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_hw_info) == 40);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hw_info, data_uptr) == 16);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hw_info, out_data_type) == 24);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hw_info, out_max_pasid_log2) == 28);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hw_info, out_capabilities) == 32);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_hwpt_pgfault) == 40);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_pgfault, dev_id) == 4);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_pgfault, pasid) == 8);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_pgfault, grpid) == 12);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_pgfault, perm) == 16);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_pgfault, addr) == 24);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_pgfault, length) == 32);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_pgfault, cookie) == 36);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_hwpt_page_response) == 8);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_hwpt_page_response, code) == 4);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_fault_alloc) == 16);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_fault_alloc, out_fault_id) == 8);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_fault_alloc, out_fault_fd) == 12);


#endif /* PINLESS_IOMMU_UAPI_IOMMUFD_H */
