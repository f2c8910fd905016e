/*
 * IOMMUFD_TEST selftest ABI (kernel built with CONFIG_IOMMUFD_TEST=y).
 *
 * The kernel keeps this ABI in drivers/iommu/iommufd/iommufd_test.h (not an
 * installed uapi header); these are our own definitions of the subset pinless
 * tests use, written from Linux 7.2. The op numbers are an enum in the
 * kernel that has only grown at the end; the values below are 7.2's.
 *
 * One ioctl, IOMMU_TEST_CMD = _IO(';', 0xa0), on an iommufd; `op` picks the
 * operation and `id` is its main object (see each op). The kernel requires
 * size >= offsetofend(last) and zero bytes beyond what it knows.
 *
 * Mock device facts: IOVAs must lie in MOCK_APERTURE_START..MOCK_APERTURE_LAST,
 * the mock page size is 2 KiB, TRIGGER_IOPF always sets LAST_PAGE.
 * Plain C (C11) and C++ compatible.
 */
#ifndef PINLESS_IOMMU_UAPI_IOMMUFD_TEST_H
#define PINLESS_IOMMU_UAPI_IOMMUFD_TEST_H

#include "pinless/iommu/uapi/iommufd.h"

enum {
	IOMMU_TEST_OP_ADD_RESERVED = 1,
	IOMMU_TEST_OP_MOCK_DOMAIN = 2,         /* id = IOAS/HWPT; out: stdev, hwpt, idev */
	IOMMU_TEST_OP_MD_CHECK_MAP = 3,        /* id = mock HWPT; check_map */
	IOMMU_TEST_OP_MD_CHECK_REFS = 4,
	IOMMU_TEST_OP_CREATE_ACCESS = 5,
	IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6,
	IOMMU_TEST_OP_ACCESS_PAGES = 7,
	IOMMU_TEST_OP_ACCESS_RW = 8,
	IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9,
	IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10, /* id = stdev; mock_domain_replace.pt_id */
	IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11,
	IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12,  /* MOCK_DOMAIN with dev_flags */
	IOMMU_TEST_OP_DIRTY = 13,
	IOMMU_TEST_OP_MD_CHECK_IOTLB = 14,
	IOMMU_TEST_OP_TRIGGER_IOPF = 15,       /* trigger_iopf.dev_id = idev */
	IOMMU_TEST_OP_DEV_CHECK_CACHE = 16,
	IOMMU_TEST_OP_TRIGGER_VEVENT = 17,
	IOMMU_TEST_OP_PASID_ATTACH = 18,
	IOMMU_TEST_OP_PASID_REPLACE = 19,
	IOMMU_TEST_OP_PASID_DETACH = 20,
	IOMMU_TEST_OP_PASID_CHECK_HWPT = 21,
};

/* Mock domain geometry (default page table format). */
#define MOCK_APERTURE_START (1ULL << 24)
#define MOCK_APERTURE_LAST ((1ULL << 31) - 1)
#define MOCK_PAGE_SIZE 2048u

/* dev_flags for IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS. */
enum {
	MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0,
	MOCK_FLAGS_DEVICE_PASID = 1 << 2,
};

/* Mock IOMMU PASID width. */
#define MOCK_PASID_WIDTH 20

struct iommu_test_cmd {
	__u32 size;
	__u32 op;
	__u32 id;
	__u32 __reserved;
	union {
		struct {
			__aligned_u64 start;
			__aligned_u64 length;
		} add_reserved;
		struct {
			__u32 out_stdev_id; /* the selftest object; destroy it to remove the device */
			__u32 out_hwpt_id;  /* auto-domain HWPT the device was attached to */
			__u32 out_idev_id;  /* iommufd device ID (as from VFIO BIND) */
		} mock_domain;
		struct {
			__u32 out_stdev_id;
			__u32 out_hwpt_id;
			__u32 out_idev_id;
			__u32 dev_flags;
		} mock_domain_flags;
		struct {
			__u32 pt_id; /* in: IOAS/HWPT; out: attached HWPT */
		} mock_domain_replace;
		struct {
			__aligned_u64 iova; /* each mock page at iova must map to uptr's page */
			__aligned_u64 length;
			__aligned_u64 uptr;
		} check_map;
		struct {
			__aligned_u64 length;
			__aligned_u64 uptr;
			__u32 refs;
		} check_refs;
		struct {
			__u32 out_access_fd;
			__u32 flags;
		} create_access;
		struct {
			__u32 access_pages_id;
		} destroy_access_pages;
		struct {
			__u32 flags;
			__u32 out_access_pages_id;
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
		} access_pages;
		struct {
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
			__u32 flags;
		} access_rw;
		struct {
			__u32 limit;
		} memory_limit;
		struct {
			__u32 ioas_id;
		} access_replace_ioas;
		struct {
			__u32 flags;
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 page_size;
			__aligned_u64 uptr;
			__aligned_u64 out_nr_dirty;
		} dirty; /* the largest member: 48 bytes */
		struct {
			__u32 id;
			__u32 iotlb;
		} check_iotlb;
		struct {
			__u32 dev_id; /* iommufd device ID (out_idev_id) */
			__u32 pasid;  /* 0 = no PASID; else PASID_VALID is set */
			__u32 grpid;
			__u32 perm;   /* enum iommu_hwpt_pgfault_perm */
			__u64 addr;
		} trigger_iopf;
		struct {
			__u32 id;
			__u32 cache;
		} check_dev_cache;
		struct {
			__u32 dev_id;
		} trigger_vevent;
		struct {
			__u32 pasid;
			__u32 pt_id;
		} pasid_attach;
		struct {
			__u32 pasid;
			__u32 pt_id;
		} pasid_replace;
		struct {
			__u32 pasid;
		} pasid_detach;
		struct {
			__u32 pasid;
			__u32 hwpt_id;
		} pasid_check;
	};
	__u32 last;
};
#define IOMMU_TEST_CMD _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32)

PINLESS_UAPI_ASSERT(IOMMU_TEST_CMD == 0x3ba0);
PINLESS_UAPI_ASSERT(sizeof(struct iommu_test_cmd) == 72);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_test_cmd, id) == 8);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_test_cmd, mock_domain.out_stdev_id) == 16);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_test_cmd, mock_domain.out_hwpt_id) == 20);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_test_cmd, mock_domain.out_idev_id) == 24);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_test_cmd, mock_domain_replace.pt_id) == 16);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_test_cmd, check_map.iova) == 16);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_test_cmd, check_map.uptr) == 32);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_test_cmd, trigger_iopf.perm) == 28);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_test_cmd, trigger_iopf.addr) == 32);
PINLESS_UAPI_ASSERT(offsetof(struct iommu_test_cmd, last) == 64);

#endif /* PINLESS_IOMMU_UAPI_IOMMUFD_TEST_H */
