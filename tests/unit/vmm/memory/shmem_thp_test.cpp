#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "fakes/fake_sys.h"
#include "fakes/log_capture.h"
#include "pinless/vmm/memory/guest_memory.h"
#include "pinless/vmm/memory/shmem_thp.h"

using namespace pinless;
using namespace pinless::vmm;

namespace {
// shmem_enabled as the kernel prints it, with `mode` selected.
std::string file_text(const std::string& mode) {
  std::string text;
  for (const char* m : {"always", "within_size", "advise", "never", "deny", "force"}) {
    if (!text.empty()) text += ' ';
    text += m == mode ? "[" + mode + "]" : std::string(m);
  }
  return text + "\n";
}

struct TempShmemEnabled {
  std::string path;
  explicit TempShmemEnabled(const std::string& text) {
    char tmpl[] = "/tmp/pinless-shmem-enabled-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = tmpl;
    std::ofstream(path) << text;
  }
  ~TempShmemEnabled() { ::unlink(path.c_str()); }
};
}  // namespace

TEST_CASE("shmem THP: the selected mode is the bracketed word") {
  CHECK(shmem_thp_mode("always within_size advise [never] deny force\n") == "never");
  CHECK(shmem_thp_mode("[always] within_size advise never deny force") == "always");
  CHECK(shmem_thp_mode("always within_size [advise] never deny force\n") == "advise");
  CHECK(shmem_thp_mode("always within_size advise never deny force\n").empty());
  CHECK(shmem_thp_mode("").empty());
  CHECK(shmem_thp_mode("[never").empty());
}

TEST_CASE("shmem THP: thp=on takes effect with advise, within_size, always and force") {
  for (std::string mode : {"advise", "within_size", "always", "force"}) {
    CAPTURE(mode);
    CHECK(shmem_thp_warning(file_text(mode), kShmemEnabledPath).empty());
  }
}

TEST_CASE("shmem THP: never and deny get a warning that names the file and the fix") {
  for (std::string mode : {"never", "deny"}) {
    CAPTURE(mode);
    std::string w = shmem_thp_warning(file_text(mode), "/sys/kernel/mm/transparent_hugepage/shmem_enabled");
    CHECK(w.find("thp=on") != std::string::npos);
    CHECK(w.find("[" + mode + "]") != std::string::npos);
    CHECK(w.find("echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled") != std::string::npos);
  }
  // Text the kernel never prints is not trusted either.
  CHECK_FALSE(shmem_thp_warning("madvise\n", kShmemEnabledPath).empty());
}

TEST_CASE("shmem THP: the file is read from the path given") {
  TempShmemEnabled never(file_text("never"));
  std::string w = check_shmem_thp(never.path);
  CHECK(w.find("echo advise > " + never.path) != std::string::npos);
  TempShmemEnabled advise(file_text("advise"));
  CHECK(check_shmem_thp(advise.path).empty());
  std::string missing = check_shmem_thp("/nonexistent/shmem_enabled");
  CHECK(missing.find("/nonexistent/shmem_enabled") != std::string::npos);
  CHECK(missing.find("thp=on") != std::string::npos);
}

TEST_CASE("guest memory: thp=on warns when shmem_enabled ignores MADV_HUGEPAGE, and only then") {
  testing::FakeSys sys;
  TempShmemEnabled never(file_text("never"));
  {
    testing::LogCapture log("vmm");
    auto mem = GuestMemory::create(sys, {64 * kMiB, false, true}, never.path);
    REQUIRE(mem.has_value());  // not fatal: the guest runs on small pages
    CHECK(log.text().find("warning: ") != std::string::npos);
    CHECK(log.text().find("echo advise > " + never.path) != std::string::npos);
  }
  {
    testing::LogCapture log("vmm");
    REQUIRE(GuestMemory::create(sys, {64 * kMiB, false, false}, never.path).has_value());
    CHECK(log.text().find(never.path) == std::string::npos);
  }
  TempShmemEnabled advise(file_text("advise"));
  {
    testing::LogCapture log("vmm");
    REQUIRE(GuestMemory::create(sys, {64 * kMiB, false, true}, advise.path).has_value());
    CHECK(log.text().find(advise.path) == std::string::npos);
  }
}
