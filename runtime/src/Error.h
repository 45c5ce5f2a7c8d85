// Internal error type of the runtime: every failure is an rt::Error carrying the
// C status it maps to. The C API (CApi.cpp) catches it at the boundary and sets
// the thread-local last error.
#pragma once

#include "nsajit/nsajit.h"

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace nsajit::rt {

class Error : public std::runtime_error {
public:
  Error(nsajit_status status, const std::string &message) : std::runtime_error(message), status_(status) {}
  nsajit_status status() const { return status_; }

private:
  nsajit_status status_;
};

template <typename... Args>
[[noreturn]] void fail(nsajit_status status, fmt::format_string<Args...> f, Args &&...args) {
  throw Error(status, fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void invalidArgument(fmt::format_string<Args...> f, Args &&...args) {
  throw Error(NSAJIT_ERROR_INVALID_ARGUMENT, fmt::format(f, std::forward<Args>(args)...));
}

} // namespace nsajit::rt
