// The IOMMUFD_TEST mock device (kernel selftest driver, CONFIG_IOMMUFD_TEST) as a DMA device
// of a pinless VM: `--device mock,idev=I,stdev=S,home=H` names one that the caller created on
// the iommufd it passed with --iommufd-fd. pinless moves it between page tables with
// IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE; the caller triggers its faults. For tests only.
#pragma once

#include <cstdint>

#include "pinless/base/result.h"
#include "pinless/base/sys.h"

namespace pinless::vmm {

// Moves mock device `stdev` onto the IOAS or HWPT `pt_id` of iommufd `fd`.
Status mock_domain_replace(Sys& sys, int iommufd, uint32_t stdev, uint32_t pt_id);

}  // namespace pinless::vmm
