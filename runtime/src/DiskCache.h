// The on-disk PTX cache.
//
// Directory: $NSAJIT_CACHE_DIR, else $XDG_CACHE_HOME/nsajit, else
// $HOME/.cache/nsajit ("off" in NSAJIT_CACHE_DIR disables the disk cache).
// One file per entry, named by a hex hash of the key. Each file holds a header
// with the full key, the payload length and a checksum, so a hash collision,
// a truncated or a corrupted file is rejected (a miss), never returned.
// Writes go to a temporary file that is renamed into place (atomic on POSIX),
// so concurrent writers and readers (threads or processes) never see a partial
// file. A directory that cannot be created or written degrades the cache to
// read-only or off with a warning; the cache never makes a caller fail.
// Size: after each store, when the entries exceed the limit (NSAJIT_CACHE_MAX_MB,
// default 2048; 0 = no limit), the least recently used ones (file modification
// time, which a load refreshes) are deleted down to 90 % of it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace nsajit::rt {

class DiskCache {
public:
  enum class Mode { Off, ReadOnly, ReadWrite };

  // Resolves the directory from the environment (lookup = getenv by default).
  // Returns "" when the disk cache is off (NSAJIT_CACHE_DIR=off, or no HOME);
  // `why` then says why.
  static std::string resolveDirectory(const std::function<const char *(const char *)> &lookup,
                                      std::string *why = nullptr);

  // Opens (creating if needed) `dir`; "" = off. Never throws for I/O problems:
  // they set mode() and warning().
  explicit DiskCache(std::string dir, std::string offReason = "", std::uint64_t maxBytes = 0);

  // The process-wide cache, from the environment at first use.
  static std::shared_ptr<DiskCache> global();
  // Tests only: replaces the process-wide cache (nullptr: re-read the environment next time).
  static void setGlobalForTesting(std::shared_ptr<DiskCache> cache);

  // The payload stored under `key`, or nullopt (missing, or rejected: see rejects()).
  std::optional<std::string> load(const std::string &key);
  // Stores atomically; returns false (and sets warning()) when it could not.
  bool store(const std::string &key, const std::string &payload);

  Mode mode() const { return mode_.load(); }
  const std::string &directory() const { return dir_; }
  std::string warning() const;     // why the cache is degraded, "" if it is not
  std::string describe() const;    // one line for `nsajit info`
  std::string pathFor(const std::string &key) const;  // the file of a key

  static std::string hexKey(const std::string &key);  // 16 hex digits (FNV-1a 64)
  static std::uint64_t checksum(const std::string &key, const std::string &payload);

  std::uint64_t rejects() const { return rejects_.load(); }
  std::uint64_t writes() const { return writes_.load(); }
  std::uint64_t evictions() const { return evictions_.load(); }
  std::uint64_t maxBytes() const { return maxBytes_; }
  // The limit from NSAJIT_CACHE_MAX_MB (lookup = getenv by default): bytes, 0 = none.
  static std::uint64_t resolveMaxBytes(const std::function<const char *(const char *)> &lookup);

private:
  void degrade(Mode mode, const std::string &why);
  void evictIfOver(const std::string &keep);

  std::string dir_;
  std::atomic<Mode> mode_{Mode::Off};
  mutable std::mutex mutex_; // guards warning_
  std::string warning_;
  std::atomic<std::uint64_t> rejects_{0}, writes_{0}, evictions_{0};
  std::uint64_t maxBytes_ = 0;
  std::mutex evictMutex_; // one eviction pass at a time
};

} // namespace nsajit::rt
