#include <doctest/doctest.h>

#include "pinless/base/size.h"
#include "pinless/iommu/dma_errors.h"

using namespace pinless;
using namespace pinless::iommu;

TEST_CASE("dma errors: RLIMIT_MEMLOCK too low names the guest RAM to allow and how") {
  MemlockState mem{0, 128 * kMiB, 16 * kMiB};
  for (BackendKind kind : {BackendKind::kType1, BackendKind::kIommufd}) {
    std::string m = map_error(kind, Error("MAP", ENOMEM), Iova(0), 128 * kMiB, mem).message();
    CHECK(m.find("needs RLIMIT_MEMLOCK >= 128M") != std::string::npos);
    CHECK(m.find("limit now 16M") != std::string::npos);
    CHECK(m.find("ulimit -l 131072") != std::string::npos);
    CHECK(m.find("LimitMEMLOCK=") != std::string::npos);
    CHECK(m.find("CAP_IPC_LOCK") != std::string::npos);
  }
}

TEST_CASE("dma errors: iommufd refusing a VM that fits the limit blames the per-user budget") {
  // 128M under a 192M limit still fails: other processes of the user pinned the rest.
  MemlockState mem{0, 128 * kMiB, 192 * kMiB};
  std::string m = map_error(BackendKind::kIommufd, Error("IOMMU_IOAS_MAP", ENOMEM), Iova(0), 128 * kMiB, mem).message();
  CHECK(m.find("fits RLIMIT_MEMLOCK (192M) on its own") != std::string::npos);
  CHECK(m.find("charges pinned pages per user") != std::string::npos);
  CHECK(m.find("every VM of the user together") != std::string::npos);
  CHECK(m.find("needs RLIMIT_MEMLOCK >=") == std::string::npos);
  // type1 charges the process: the plain advice stays.
  std::string t = map_error(BackendKind::kType1, Error("VFIO_IOMMU_MAP_DMA", ENOMEM), Iova(0), 128 * kMiB, mem).message();
  CHECK(t.find("per user") == std::string::npos);
}
