#include "mock_device.h"

#include <fmt/format.h>

#include "pinless/iommu/uapi/iommufd_test.h"

namespace pinless::vmm {

Status mock_domain_replace(Sys& sys, int iommufd, uint32_t stdev, uint32_t pt_id) {
  iommu_test_cmd cmd{};
  cmd.size = sizeof(cmd);
  cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE;
  cmd.id = stdev;
  cmd.mock_domain_replace.pt_id = pt_id;
  if (int r = sys.ioctl(iommufd, IOMMU_TEST_CMD, &cmd); r < 0) {
    Error e("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", -r, fmt::format("mock device {} -> object {}", stdev, pt_id));
    if (-r == ENOTTY) {
      return std::unexpected(std::move(e).with_hint("this kernel lacks CONFIG_IOMMUFD_TEST (the mock device is for tests)"));
    }
    if (-r == ENOENT) return std::unexpected(std::move(e).with_hint("check the stdev= id from IOMMU_TEST_OP_MOCK_DOMAIN"));
    return std::unexpected(std::move(e));
  }
  return {};
}

}  // namespace pinless::vmm
