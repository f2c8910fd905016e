#include "pinless/base/result.h"

#include <cstring>

namespace pinless {

std::string Error::message() const {
  std::string m;
  if (!context_.empty()) m += context_ + ": ";
  m += op_;
  if (errno_ != 0) {
    m += ": ";
    m += std::strerror(errno_);
  }
  if (!hint_.empty()) m += " (" + hint_ + ")";
  return m;
}

}  // namespace pinless
