#include "Log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

namespace nsajit::rt {

namespace {
std::mutex gLogMutex;
nsajit_log_fn gLogFn = nullptr;
void *gLogUser = nullptr;

bool verbose() {
  static const bool v = [] {
    const char *e = std::getenv("NSAJIT_VERBOSE");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return v;
}
} // namespace

void setLogCallback(nsajit_log_fn fn, void *user) {
  std::lock_guard<std::mutex> lock(gLogMutex);
  gLogFn = fn;
  gLogUser = user;
}

void logMessage(nsajit_log_level level, const std::string &message) {
  nsajit_log_fn fn;
  void *user;
  {
    std::lock_guard<std::mutex> lock(gLogMutex);
    fn = gLogFn;
    user = gLogUser;
  }
  if (level == NSAJIT_LOG_INFO && !verbose())
    return;
  if (fn) {
    fn(level, message.c_str(), user);
    return;
  }
  std::fprintf(stderr, "nsajit: %s: %s\n", level == NSAJIT_LOG_WARNING ? "warning" : "info", message.c_str());
}

void logWarningOnce(const std::string &message) {
  static std::mutex m;
  static std::set<std::string> seen;
  {
    std::lock_guard<std::mutex> lock(m);
    if (!seen.insert(message).second)
      return;
  }
  logWarning(message);
}

} // namespace nsajit::rt
