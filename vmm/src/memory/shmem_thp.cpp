#include "pinless/vmm/memory/shmem_thp.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace pinless::vmm {
namespace {

// The modes under which a MADV_HUGEPAGE'd shmem mapping gets huge pages (Documentation/
// admin-guide/mm/transhuge.rst); `never` and `deny` do not, whatever the madvise.
bool honours_madvise(std::string_view mode) {
  return mode == "advise" || mode == "within_size" || mode == "always" || mode == "force";
}

}  // namespace

std::string_view shmem_thp_mode(std::string_view text) {
  auto open = text.find('[');
  if (open == std::string_view::npos) return {};
  auto close = text.find(']', open);
  if (close == std::string_view::npos) return {};
  return text.substr(open + 1, close - open - 1);
}

std::string shmem_thp_warning(std::string_view text, const std::string& path) {
  std::string_view mode = shmem_thp_mode(text);
  if (honours_madvise(mode)) return "";
  std::string seen = mode.empty() ? "has no mode selected" : "is [" + std::string(mode) + "]";
  return "--memory thp=on has no effect: guest RAM is shmem (a memfd), and " + path + " " + seen +
         ", so it stays on 4K pages; allow THP for it with: echo advise > " + path;
}

std::string check_shmem_thp(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return "--memory thp=on may have no effect: cannot read " + path + " (" + std::strerror(errno) +
           "; a kernel without transparent huge pages has no such file)";
  }
  std::ostringstream text;
  text << in.rdbuf();
  return shmem_thp_warning(text.str(), path);
}

}  // namespace pinless::vmm
