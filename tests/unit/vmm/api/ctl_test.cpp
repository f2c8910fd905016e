#include <doctest/doctest.h>

#include "pinless/vmm/api/ctl.h"

using namespace pinless::vmm::api;

TEST_CASE("ctl: info and counters read well, and survive missing or odd members") {
  Json info = Json::parse(R"({"pid": 7, "state": "paused", "vcpus": 2,
    "config": {"kernel": "/k", "initrd": null, "cmdline": "c", "memory": {"size": 268435456, "hugepages": true, "thp": false}},
    "dma_regions": [{"gpa": "0x0", "size": 1048576, "dma": "fault", "premap": 16, "window": "aligned", "pinned_bytes": 4096}],
    "devices": [{"bdf": "00:02.0", "host": "0000:00:03.0", "backend": "iommufd", "domain": "vm"},
                {"bdf": "00:01.0", "kind": "virtio-iommu"}]})");
  std::string text = format_info(info);
  CHECK(text.find("state     paused (pid 7)") != std::string::npos);
  CHECK(text.find("memory    256M (hugepages on, thp off)") != std::string::npos);
  CHECK(text.find("initrd    -") != std::string::npos);
  CHECK(text.find("fault (premap 16 pages, window aligned), pinned 4K") != std::string::npos);
  CHECK(text.find("00:02.0 vfio 0000:00:03.0 (backend iommufd, domain vm)") != std::string::npos);
  CHECK(text.find("00:01.0 virtio-iommu") != std::string::npos);

  Json counters = Json::parse(R"({"state": "running", "vm_exits": {"total": 3, "by_reason": {"io": 2, "hlt": 1},
    "kvm_run_interrupted": 4}, "dma": null, "api": {"requests": 5, "responses_2xx": 4, "responses_4xx": 1}})");
  text = format_counters(counters);
  CHECK(text.find("vm exits  3 (io 2, hlt 1); KVM_RUN interrupted 4") != std::string::npos);
  CHECK(text.find("api       5 requests (2xx 4, 4xx 1, 5xx 0)") != std::string::npos);
  CHECK(text.find("dma") == std::string::npos);

  // Whatever the server sends, formatting does not throw.
  for (const char* odd : {"{}", "[]", "null", R"({"config": 5, "devices": {"a": 1}, "vm_exits": []})"}) {
    CAPTURE(odd);
    Json j = Json::parse(odd);
    CHECK_NOTHROW(format_info(j));
    CHECK_NOTHROW(format_counters(j));
    CHECK_NOTHROW(format_timeline(j));
  }
}
