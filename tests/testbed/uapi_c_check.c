/* Compile-only check: the iommufd uapi headers are valid C11 (their static asserts run here too). */
#include "pinless/iommu/uapi/iommufd.h"
#include "pinless/iommu/uapi/iommufd_test.h"

int pinless_uapi_c_check(void);
int pinless_uapi_c_check(void) { return (int)sizeof(struct iommu_test_cmd); }
