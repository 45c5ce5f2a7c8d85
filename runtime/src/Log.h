// Warnings and information messages of the runtime: to the callback set with
// nsajit_set_log_callback, else warnings to stderr (infos only with NSAJIT_VERBOSE=1).
#pragma once

#include "nsajit/nsajit.h"

#include <string>

namespace nsajit::rt {

void setLogCallback(nsajit_log_fn fn, void *user);
void logMessage(nsajit_log_level level, const std::string &message);
inline void logWarning(const std::string &message) { logMessage(NSAJIT_LOG_WARNING, message); }
inline void logInfo(const std::string &message) { logMessage(NSAJIT_LOG_INFO, message); }
// Warns once per distinct message per process.
void logWarningOnce(const std::string &message);

} // namespace nsajit::rt
