#include "DiskCache.h"

#include "Log.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <dirent.h>
#include <fcntl.h>
#include <vector>
#include <sys/stat.h>
#include <unistd.h>

namespace nsajit::rt {

namespace {

constexpr char kMagic[8] = {'N', 'S', 'A', 'J', 'I', 'T', 'C', '1'};
// 2: the word-wise checksum (1: FNV-1a over every byte).
constexpr std::uint32_t kFormatVersion = 2;
constexpr std::size_t kHeaderSize = 48;
constexpr std::uint64_t kMaxKey = 1u << 20;
constexpr std::uint64_t kMaxPayload = 1ull << 30;

void putU32(unsigned char *p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void putU64(unsigned char *p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i)
    p[i] = static_cast<unsigned char>(v >> (8 * i));
}
std::uint32_t getU32(const unsigned char *p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<std::uint32_t>(p[i]) << (8 * i);
  return v;
}
std::uint64_t getU64(const unsigned char *p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

std::uint64_t fnv1a(std::uint64_t h, const void *data, std::size_t n) {
  const unsigned char *p = static_cast<const unsigned char *>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

// A checksum that reads 8-byte words in four independent lanes: each word is
// xored into its lane, multiplied by an odd constant and its high bits shifted
// down (every step is a bijection, so one changed word always changes its
// lane), the tail bytes go through FNV-1a, and the lanes are folded and mixed.
// For a configuration's 700 KB of machine code FNV-1a a byte at a time (format
// 1) took 0.82 ms on the build host and this 0.04 ms; the cached load of all
// the configuration's kernels measured 10.1 ms (H100 host,
// bench/results/2026-11-27-h100-session17/s17run5).
std::uint64_t wordChecksum(std::uint64_t seed, const void *data, std::size_t n) {
  constexpr std::uint64_t kMul[4] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull,
                                     0xD6E8FEB86659FD93ull};
  const unsigned char *p = static_cast<const unsigned char *>(data);
  std::uint64_t lane[4] = {seed, seed ^ kMul[1], seed ^ kMul[2], seed ^ kMul[3]};
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 4; ++j) {
      std::uint64_t w;
      std::memcpy(&w, p + i + 8 * j, 8);
      lane[j] = (lane[j] ^ w) * kMul[j];
      lane[j] ^= lane[j] >> 31;
    }
  std::uint64_t h = fnv1a(seed ^ n, p + i, n - i);
  for (int j = 0; j < 4; ++j) {
    h = (h ^ lane[j]) * 1099511628211ull;
    h ^= h >> 29;
  }
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  return h ^ (h >> 33);
}

// mkdir -p; returns 0 or the errno of the first failure.
int makeDirs(const std::string &dir) {
  if (dir.empty())
    return ENOENT;
  std::string partial;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty())
      continue;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
      return errno;
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    return errno;
  if (!S_ISDIR(st.st_mode))
    return ENOTDIR;
  return 0;
}

bool writeAll(int fd, const void *data, std::size_t n) {
  const char *p = static_cast<const char *>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool readAll(int fd, void *data, std::size_t n) {
  char *p = static_cast<char *>(data);
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    if (r == 0)
      return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

std::mutex gGlobalMutex;
std::shared_ptr<DiskCache> gGlobal;

} // namespace

std::uint64_t DiskCache::checksum(const std::string &key, const std::string &payload) {
  return wordChecksum(wordChecksum(1469598103934665603ull, key.data(), key.size()), payload.data(), payload.size());
}

std::string DiskCache::hexKey(const std::string &key) {
  return fmt::format("{:016x}", fnv1a(1469598103934665603ull, key.data(), key.size()));
}

std::string DiskCache::resolveDirectory(const std::function<const char *(const char *)> &lookup, std::string *why) {
  auto get = [&](const char *name) -> std::string {
    const char *v = lookup(name);
    return v ? std::string(v) : std::string();
  };
  std::string dir = get("NSAJIT_CACHE_DIR");
  if (!dir.empty()) {
    if (dir == "off" || dir == "OFF" || dir == "0") {
      if (why)
        *why = "disabled by NSAJIT_CACHE_DIR=" + dir;
      return {};
    }
    return dir;
  }
  // XDG base directory spec: a relative XDG_CACHE_HOME is invalid and ignored.
  std::string xdg = get("XDG_CACHE_HOME");
  if (!xdg.empty() && xdg[0] == '/')
    return xdg + "/nsajit";
  std::string home = get("HOME");
  if (!home.empty())
    return home + "/.cache/nsajit";
  if (why)
    *why = "neither NSAJIT_CACHE_DIR, XDG_CACHE_HOME nor HOME is set";
  return {};
}

std::uint64_t DiskCache::resolveMaxBytes(const std::function<const char *(const char *)> &lookup) {
  constexpr std::uint64_t kDefaultMb = 2048;
  const char *v = lookup("NSAJIT_CACHE_MAX_MB");
  if (!v || !*v)
    return kDefaultMb << 20;
  char *end = nullptr;
  errno = 0;
  unsigned long long mb = std::strtoull(v, &end, 10);
  if (errno != 0 || !end || *end != '\0' || v[0] == '-') {
    logWarningOnce(fmt::format("NSAJIT_CACHE_MAX_MB = '{}' is not a number of megabytes: using {}", v, kDefaultMb));
    return kDefaultMb << 20;
  }
  return static_cast<std::uint64_t>(std::min<unsigned long long>(mb, 1ull << 40)) << 20;
}

DiskCache::DiskCache(std::string dir, std::string offReason, std::uint64_t maxBytes)
    : dir_(std::move(dir)), maxBytes_(maxBytes) {
  while (dir_.size() > 1 && dir_.back() == '/')
    dir_.pop_back();
  if (dir_.empty()) {
    mode_ = Mode::Off;
    std::lock_guard<std::mutex> lock(mutex_);
    warning_ = offReason.empty() ? "disk cache is off" : "disk cache is off: " + offReason;
    return;
  }
  if (int err = makeDirs(dir_)) {
    degrade(Mode::Off, fmt::format("cannot create the cache directory {} ({}): compiled kernels are kept in memory "
                                   "only; set NSAJIT_CACHE_DIR to a writable directory",
                                   dir_, std::strerror(err)));
    return;
  }
  // Probe: access() is not enough (root, read-only mounts), so write a file.
  std::string probe = fmt::format("{}/.probe.{}.{}", dir_, ::getpid(), static_cast<const void *>(this));
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    int err = errno;
    bool readable = ::access(dir_.c_str(), R_OK | X_OK) == 0;
    degrade(readable ? Mode::ReadOnly : Mode::Off,
            fmt::format("the cache directory {} is not writable ({}): {}; set NSAJIT_CACHE_DIR to a writable "
                        "directory",
                        dir_, std::strerror(err),
                        readable ? "cached kernels are read from it but new ones are kept in memory only"
                                 : "compiled kernels are kept in memory only"));
    return;
  }
  ::close(fd);
  ::unlink(probe.c_str());
  mode_ = Mode::ReadWrite;
}

void DiskCache::degrade(Mode mode, const std::string &why) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (mode_.load() == Mode::Off && !warning_.empty())
      return;
    mode_ = mode;
    warning_ = why;
  }
  logWarningOnce(why);
}

std::string DiskCache::warning() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return warning_;
}

std::string DiskCache::describe() const {
  switch (mode()) {
  case Mode::ReadWrite:
    return maxBytes_ ? fmt::format("disk cache: {} (read-write, at most {} MB)", dir_, maxBytes_ >> 20)
                     : fmt::format("disk cache: {} (read-write)", dir_);
  case Mode::ReadOnly: return fmt::format("disk cache: {} (read-only: {})", dir_, warning());
  case Mode::Off: break;
  }
  return fmt::format("disk cache: off ({})", warning());
}

std::string DiskCache::pathFor(const std::string &key) const { return dir_ + "/" + hexKey(key) + ".nsajit"; }

std::optional<std::string> DiskCache::load(const std::string &key) {
  if (mode() == Mode::Off)
    return std::nullopt;
  std::string path = pathFor(key);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return std::nullopt; // a miss
  auto reject = [&](const char *why) -> std::optional<std::string> {
    ::close(fd);
    rejects_.fetch_add(1);
    logInfo(fmt::format("disk cache: ignoring {}: {}", path, why));
    return std::nullopt;
  };
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    return reject("not a regular file");
  unsigned char h[kHeaderSize];
  if (static_cast<std::uint64_t>(st.st_size) < kHeaderSize || !readAll(fd, h, kHeaderSize))
    return reject("truncated header");
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0)
    return reject("bad magic");
  if (getU32(h + 8) != kFormatVersion || getU32(h + 12) != kHeaderSize)
    return reject("unknown format version");
  std::uint64_t keyLen = getU64(h + 16), payloadLen = getU64(h + 24), sum = getU64(h + 32);
  if (keyLen > kMaxKey || payloadLen > kMaxPayload)
    return reject("implausible lengths");
  if (static_cast<std::uint64_t>(st.st_size) != kHeaderSize + keyLen + payloadLen)
    return reject("file size does not match the header (truncated or appended)");
  if (keyLen != key.size())
    return reject("different key (hash collision)");
  std::string storedKey(keyLen, '\0');
  std::string payload(payloadLen, '\0');
  if (!readAll(fd, storedKey.data(), keyLen) || !readAll(fd, payload.data(), payloadLen))
    return reject("short read");
  if (storedKey != key)
    return reject("different key (hash collision)");
  if (checksum(storedKey, payload) != sum)
    return reject("checksum mismatch (corrupted)");
  ::futimens(fd, nullptr); // recently used: the last to be evicted (fails harmlessly when read-only)
  ::close(fd);
  return payload;
}

bool DiskCache::store(const std::string &key, const std::string &payload) {
  if (mode() != Mode::ReadWrite)
    return false;
  if (key.size() > kMaxKey || payload.size() > kMaxPayload)
    return false;
  unsigned char h[kHeaderSize] = {};
  std::memcpy(h, kMagic, sizeof kMagic);
  putU32(h + 8, kFormatVersion);
  putU32(h + 12, kHeaderSize);
  putU64(h + 16, key.size());
  putU64(h + 24, payload.size());
  putU64(h + 32, checksum(key, payload));
  putU64(h + 40, 0);

  std::string path = pathFor(key);
  // A name no other writer uses: pid, a process-wide counter (several DiskCache
  // objects may share a directory) and O_EXCL to be sure.
  static std::atomic<std::uint64_t> counter{0};
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    tmp = fmt::format("{}/.tmp.{}.{}.{}", dir_, hexKey(key), ::getpid(), counter.fetch_add(1));
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST)
      break;
  }
  if (fd < 0) {
    int err = errno;
    if (err == EACCES || err == EPERM || err == EROFS || err == ENOENT || err == ENOTDIR)
      degrade(Mode::ReadOnly, fmt::format("cannot write to the cache directory {} ({}): new kernels are kept in "
                                          "memory only",
                                          dir_, std::strerror(err)));
    else
      logWarningOnce(fmt::format("could not create a file in the cache directory {} ({}): the kernel is kept in "
                                 "memory only",
                                 dir_, std::strerror(err)));
    return false;
  }
  bool ok = writeAll(fd, h, kHeaderSize) && writeAll(fd, key.data(), key.size()) &&
            writeAll(fd, payload.data(), payload.size());
  int err = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    // A full disk or a vanished directory: warn once, keep trying later stores.
    logWarningOnce(fmt::format("could not write {} to the cache directory ({}): the kernel is kept in memory only",
                               path, std::strerror(err)));
    return false;
  }
  writes_.fetch_add(1);
  evictIfOver(path);
  return true;
}

void DiskCache::evictIfOver(const std::string &keep) {
  if (!maxBytes_)
    return;
  std::lock_guard<std::mutex> lock(evictMutex_);
  struct Entry {
    std::string path;
    std::uint64_t bytes;
    struct timespec mtime;
  };
  std::vector<Entry> entries;
  std::uint64_t total = 0;
  if (DIR *d = ::opendir(dir_.c_str())) {
    while (struct dirent *e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.size() < 8 || name.compare(name.size() - 7, 7, ".nsajit") != 0)
        continue; // only finished entries: not temporaries, probes or other files
      std::string path = dir_ + "/" + name;
      struct stat st;
      if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        continue;
      entries.push_back({path, static_cast<std::uint64_t>(st.st_size), st.st_mtim});
      total += static_cast<std::uint64_t>(st.st_size);
    }
    ::closedir(d);
  }
  if (total <= maxBytes_)
    return;
  std::sort(entries.begin(), entries.end(), [](const Entry &a, const Entry &b) {
    return a.mtime.tv_sec != b.mtime.tv_sec ? a.mtime.tv_sec < b.mtime.tv_sec : a.mtime.tv_nsec < b.mtime.tv_nsec;
  });
  const std::uint64_t target = maxBytes_ / 10 * 9;
  std::uint64_t removed = 0;
  for (const Entry &e : entries) {
    if (total <= target)
      break;
    if (e.path == keep)
      continue;
    if (::unlink(e.path.c_str()) == 0) {
      total -= e.bytes;
      ++removed;
    }
  }
  evictions_.fetch_add(removed);
  if (removed)
    logInfo(fmt::format("disk cache: evicted {} least recently used entries (limit {} MB)", removed, maxBytes_ >> 20));
}

std::shared_ptr<DiskCache> DiskCache::global() {
  std::lock_guard<std::mutex> lock(gGlobalMutex);
  if (!gGlobal) {
    std::string why;
    std::string dir = resolveDirectory([](const char *n) { return std::getenv(n); }, &why);
    gGlobal = std::make_shared<DiskCache>(dir, why,
                                          resolveMaxBytes([](const char *n) { return std::getenv(n); }));
  }
  return gGlobal;
}

void DiskCache::setGlobalForTesting(std::shared_ptr<DiskCache> cache) {
  std::lock_guard<std::mutex> lock(gGlobalMutex);
  gGlobal = std::move(cache);
}

} // namespace nsajit::rt
