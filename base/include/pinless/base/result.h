// Result<T>: the one error-carrying return type of pinless; ignoring one does not compile.
// An Error names the failing operation ("KVM_CREATE_VM", "IOMMU_IOAS_MAP"), the errno (0 when
// the failure is not a syscall's) and free-form context (paths, addresses, BDFs), and may
// carry a hint that tells the user what to do. Thread-compatible value types.
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <utility>

namespace pinless {

class [[nodiscard]] Error {
 public:
  Error() = default;
  Error(std::string op, int err, std::string context = {}, std::string hint = {})
      : op_(std::move(op)), errno_(err), context_(std::move(context)), hint_(std::move(hint)) {}

  const std::string& op() const { return op_; }
  int err() const { return errno_; }
  const std::string& context() const { return context_; }
  const std::string& hint() const { return hint_; }

  // Adds a hint (what the user should do) unless one is already set.
  Error&& with_hint(std::string hint) && {
    if (hint_.empty()) hint_ = std::move(hint);
    return std::move(*this);
  }
  // Prefixes context, e.g. "device 0000:00:03.0: " + "VFIO_DEVICE_GET_INFO ...".
  Error&& within(const std::string& outer) && {
    context_ = context_.empty() ? outer : outer + ": " + context_;
    return std::move(*this);
  }

  // One line: "<context>: <op>: <strerror>" followed by " (hint)" when a hint exists.
  std::string message() const;

 private:
  std::string op_;
  int errno_ = 0;
  std::string context_;
  std::string hint_;
};

// std::expected with [[nodiscard]] on the type (libstdc++ 12 does not mark std::expected), so
// a call whose error is dropped does not compile (-Werror=unused-result). Everything else is
// std::expected's: has_value(), error(), value(), the monadic members (which return a plain
// std::expected; it converts back to Result implicitly).
template <typename T>
class [[nodiscard]] Result : public std::expected<T, Error> {
 public:
  using Base = std::expected<T, Error>;
  using Base::Base;
  Result() = default;
  // From a std::expected (a monadic call's result); the inherited constructors exclude it.
  Result(Base e) : Base(std::move(e)) {}
};

using Status = Result<void>;

inline std::unexpected<Error> fail(std::string op, int err, std::string context = {},
                                   std::string hint = {}) {
  return std::unexpected(Error(std::move(op), err, std::move(context), std::move(hint)));
}
// Captures errno at the call site (call right after the failing syscall).
inline std::unexpected<Error> fail_errno(std::string op, std::string context = {}) {
  int e = errno;
  return std::unexpected(Error(std::move(op), e, std::move(context)));
}

}  // namespace pinless

// Propagates an error out of the enclosing function; yields the value otherwise.
#define PINLESS_TRY(expr)                                         \
  ({                                                              \
    auto&& pinless_try_r_ = (expr);                               \
    if (!pinless_try_r_) return std::unexpected(std::move(pinless_try_r_).error()); \
    std::move(pinless_try_r_).value();                            \
  })
#define PINLESS_TRY_VOID(expr)                                    \
  do {                                                            \
    auto&& pinless_try_r_ = (expr);                               \
    if (!pinless_try_r_) return std::unexpected(std::move(pinless_try_r_).error()); \
  } while (0)
