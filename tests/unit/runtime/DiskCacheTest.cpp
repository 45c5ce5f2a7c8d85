// The on-disk PTX cache: round trip, rejection of damaged or foreign files,
// atomic replacement under concurrency, directory resolution, and the
// degradation to memory-only when the directory cannot be written.
#include "DiskCache.h"
#include "Log.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <atomic>
#include <ctime>
#include <fcntl.h>
#include <sys/stat.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

using namespace nsajit::rt;
using nsajit::rt::test::LogCapture;
using nsajit::rt::test::ScopedEnv;
using nsajit::rt::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string readFile(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

const std::string kKey = "selected fwd bf16 sm_90a dk=128 dv=128 g=16 l'=64 n=16 | gpu=H100 cc9.0 | nsajit 0.1";
const std::string kPtx = "//\n.version 8.0\n.target sm_90a\n.visible .entry nsa_selected_fwd()\n{ ret; }\n";

std::vector<std::string> filesIn(const std::string &dir) {
  std::vector<std::string> names;
  for (auto &e : fs::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  return names;
}

} // namespace

TEST(DiskCache, RoundTrip) {
  TempDir tmp;
  DiskCache cache(tmp.path());
  ASSERT_EQ(cache.mode(), DiskCache::Mode::ReadWrite) << cache.warning();
  EXPECT_FALSE(cache.load(kKey).has_value());
  ASSERT_TRUE(cache.store(kKey, kPtx));
  std::optional<std::string> got = cache.load(kKey);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, kPtx);
  EXPECT_EQ(cache.writes(), 1u);
  EXPECT_EQ(cache.rejects(), 0u);

  // One file, named by the 16-hex-digit key hash, holding the full key.
  std::string path = cache.pathFor(kKey);
  EXPECT_EQ(fs::path(path).filename().string(), DiskCache::hexKey(kKey) + ".nsajit");
  EXPECT_EQ(DiskCache::hexKey(kKey).size(), 16u);
  EXPECT_EQ(DiskCache::hexKey(kKey).find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(filesIn(tmp.path()), std::vector<std::string>{fs::path(path).filename().string()});
  EXPECT_NE(readFile(path).find(kKey), std::string::npos);

  // A second cache object on the same directory (another process) sees it.
  DiskCache other(tmp.path());
  EXPECT_EQ(other.load(kKey).value_or(""), kPtx);
  // Another key misses.
  EXPECT_FALSE(other.load(kKey + " x").has_value());
  EXPECT_EQ(other.rejects(), 0u);
}

TEST(DiskCache, EmptyAndBinaryPayloads) {
  TempDir tmp;
  DiskCache cache(tmp.path());
  ASSERT_TRUE(cache.store("empty", ""));
  EXPECT_EQ(cache.load("empty").value_or("missing"), "");
  std::string binary("a\0b\xff\n", 5);
  ASSERT_TRUE(cache.store("binary", binary));
  EXPECT_EQ(cache.load("binary").value_or(""), binary);
}

TEST(DiskCache, StoreReplacesAndLeavesNoTemporaryFiles) {
  TempDir tmp;
  DiskCache cache(tmp.path());
  ASSERT_TRUE(cache.store(kKey, kPtx));
  ASSERT_TRUE(cache.store(kKey, "new PTX"));
  EXPECT_EQ(cache.load(kKey).value_or(""), "new PTX");
  EXPECT_EQ(filesIn(tmp.path()).size(), 1u);
}

TEST(DiskCache, CreatesNestedDirectories) {
  TempDir tmp;
  std::string dir = tmp / "a/b/c";
  DiskCache cache(dir + "/");
  EXPECT_EQ(cache.mode(), DiskCache::Mode::ReadWrite);
  EXPECT_EQ(cache.directory(), dir);
  EXPECT_TRUE(fs::is_directory(dir));
  EXPECT_TRUE(cache.store(kKey, kPtx));
}

TEST(DiskCache, RejectsTruncatedFiles) {
  TempDir tmp;
  DiskCache cache(tmp.path());
  ASSERT_TRUE(cache.store(kKey, kPtx));
  std::string full = readFile(cache.pathFor(kKey));
  // Cut inside the payload, inside the key, inside the header, and to nothing.
  for (std::size_t keep : {full.size() - 1, full.size() - kPtx.size() / 2, std::size_t(60), std::size_t(20),
                           std::size_t(0)}) {
    writeFile(cache.pathFor(kKey), full.substr(0, keep));
    EXPECT_FALSE(cache.load(kKey).has_value()) << "kept " << keep << " of " << full.size() << " bytes";
  }
  EXPECT_EQ(cache.rejects(), 5u);
  // Appended garbage is rejected too.
  writeFile(cache.pathFor(kKey), full + "junk");
  EXPECT_FALSE(cache.load(kKey).has_value());
  // The intact file loads again.
  writeFile(cache.pathFor(kKey), full);
  EXPECT_EQ(cache.load(kKey).value_or(""), kPtx);
}

TEST(DiskCache, RejectsCorruptedBytes) {
  TempDir tmp;
  DiskCache cache(tmp.path());
  ASSERT_TRUE(cache.store(kKey, kPtx));
  const std::string full = readFile(cache.pathFor(kKey));
  // Flip one bit at several places: magic, version, lengths, checksum, key, payload.
  for (std::size_t pos : {std::size_t(0), std::size_t(9), std::size_t(17), std::size_t(33), std::size_t(48 + 3),
                          full.size() - 5}) {
    std::string bad = full;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x04);
    writeFile(cache.pathFor(kKey), bad);
    EXPECT_FALSE(cache.load(kKey).has_value()) << "bit flip at byte " << pos;
  }
  EXPECT_EQ(cache.rejects(), 6u);
}

TEST(DiskCache, ChecksumChangesWithEveryBitOfTheKeyAndPayload) {
  // Payload lengths around the 32-byte blocks: whole blocks, a tail, only a tail.
  for (std::size_t n : {std::size_t(7), std::size_t(64), std::size_t(203)}) {
    std::string payload(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
      payload[i] = static_cast<char>(i * 37 + 11);
    const std::uint64_t base = DiskCache::checksum(kKey, payload);
    for (std::size_t i = 0; i < n; ++i)
      for (int b = 0; b < 8; ++b) {
        std::string bad = payload;
        bad[i] = static_cast<char>(bad[i] ^ (1 << b));
        EXPECT_NE(DiskCache::checksum(kKey, bad), base) << "payload of " << n << ", byte " << i << ", bit " << b;
      }
    for (std::size_t i = 0; i < kKey.size(); ++i) {
      std::string bad = kKey;
      bad[i] = static_cast<char>(bad[i] ^ 0x20);
      EXPECT_NE(DiskCache::checksum(bad, payload), base) << "key byte " << i;
    }
  }
  // The boundary between key and payload counts.
  EXPECT_NE(DiskCache::checksum("ab", "c"), DiskCache::checksum("a", "bc"));
  // Two flips of the same bit in words 32 bytes apart (the same lane) do not cancel.
  std::string zeros(96, '\0'), twice = zeros;
  twice[7] = twice[39] = static_cast<char>(0x80);
  EXPECT_NE(DiskCache::checksum(kKey, twice), DiskCache::checksum(kKey, zeros));
}

TEST(DiskCache, RejectsAFileWrittenForAnotherKey) {
  // Simulates a hash collision: the file at key B's path holds key A.
  TempDir tmp;
  DiskCache cache(tmp.path());
  const std::string keyA = kKey, keyB = kKey + " other";
  ASSERT_TRUE(cache.store(keyA, kPtx));
  fs::rename(cache.pathFor(keyA), cache.pathFor(keyB));
  EXPECT_FALSE(cache.load(keyB).has_value());
  EXPECT_FALSE(cache.load(keyA).has_value()); // gone from its own path
  EXPECT_EQ(cache.rejects(), 1u);
  // Same length, different key.
  std::string keyC = kKey;
  keyC.back() = keyC.back() == 'x' ? 'y' : 'x';
  fs::rename(cache.pathFor(keyB), cache.pathFor(keyC));
  EXPECT_FALSE(cache.load(keyC).has_value());
  EXPECT_EQ(cache.rejects(), 2u);
}

TEST(DiskCache, ConcurrentWritersNeverExposeAPartialFile) {
  TempDir tmp;
  // Payloads of different sizes so a torn file would show as a wrong length or content.
  std::vector<std::string> payloads;
  for (int i = 0; i < 4; ++i)
    payloads.push_back(std::string(1000 + 7919 * i, static_cast<char>('a' + i)));
  std::atomic<bool> stop{false};
  std::atomic<int> loads{0}, bad{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&, w] {
      DiskCache cache(tmp.path()); // separate objects, like separate processes
      for (int i = 0; i < 150; ++i)
        if (!cache.store(kKey, payloads[(w + i) % payloads.size()]))
          bad.fetch_add(1);
    });
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&] {
      DiskCache cache(tmp.path());
      while (!stop.load()) {
        if (auto got = cache.load(kKey)) {
          loads.fetch_add(1);
          if (std::find(payloads.begin(), payloads.end(), *got) == payloads.end())
            bad.fetch_add(1);
        }
      }
      if (cache.rejects() != 0)
        bad.fetch_add(1000);
    });
  for (int i = 0; i < 4; ++i)
    threads[i].join();
  stop = true;
  for (std::size_t i = 4; i < threads.size(); ++i)
    threads[i].join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(loads.load(), 0);
  // No temporary files remain.
  EXPECT_EQ(filesIn(tmp.path()).size(), 1u);
}

TEST(DiskCache, DirectoryPrecedence) {
  std::map<std::string, std::string> env;
  auto lookup = [&](const char *name) -> const char * {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  std::string why;
  env = {{"NSAJIT_CACHE_DIR", "/x/nsa"}, {"XDG_CACHE_HOME", "/x/xdg"}, {"HOME", "/x/home"}};
  EXPECT_EQ(DiskCache::resolveDirectory(lookup), "/x/nsa");
  env.erase("NSAJIT_CACHE_DIR");
  EXPECT_EQ(DiskCache::resolveDirectory(lookup), "/x/xdg/nsajit");
  env.erase("XDG_CACHE_HOME");
  EXPECT_EQ(DiskCache::resolveDirectory(lookup), "/x/home/.cache/nsajit");
  // Empty values count as unset; a relative XDG_CACHE_HOME is invalid (XDG spec).
  env = {{"NSAJIT_CACHE_DIR", ""}, {"XDG_CACHE_HOME", "relative/dir"}, {"HOME", "/x/home"}};
  EXPECT_EQ(DiskCache::resolveDirectory(lookup), "/x/home/.cache/nsajit");
  env = {{"NSAJIT_CACHE_DIR", ""}, {"XDG_CACHE_HOME", ""}, {"HOME", "/x/home"}};
  EXPECT_EQ(DiskCache::resolveDirectory(lookup), "/x/home/.cache/nsajit");
  // Off on request, or when nothing says where.
  env = {{"NSAJIT_CACHE_DIR", "off"}, {"HOME", "/x/home"}};
  EXPECT_EQ(DiskCache::resolveDirectory(lookup, &why), "");
  EXPECT_NE(why.find("NSAJIT_CACHE_DIR=off"), std::string::npos);
  env.clear();
  EXPECT_EQ(DiskCache::resolveDirectory(lookup, &why), "");
  EXPECT_NE(why.find("HOME"), std::string::npos);
}

TEST(DiskCache, GlobalCacheFollowsTheEnvironment) {
  TempDir tmp;
  {
    ScopedEnv a("NSAJIT_CACHE_DIR", nullptr), b("XDG_CACHE_HOME", tmp.path().c_str()), c("HOME", "/nonexistent");
    DiskCache::setGlobalForTesting(nullptr);
    EXPECT_EQ(DiskCache::global()->directory(), tmp / "nsajit");
    EXPECT_EQ(DiskCache::global()->mode(), DiskCache::Mode::ReadWrite);
  }
  {
    ScopedEnv a("NSAJIT_CACHE_DIR", (tmp / "explicit").c_str()), b("XDG_CACHE_HOME", tmp.path().c_str());
    DiskCache::setGlobalForTesting(nullptr);
    EXPECT_EQ(DiskCache::global()->directory(), tmp / "explicit");
    char buf[512];
    ASSERT_EQ(nsajit_cache_info(buf, sizeof buf), NSAJIT_OK) << nsajit_last_error();
    EXPECT_EQ(std::string(buf), "disk cache: " + (tmp / "explicit") +
                                    " (read-write, at most 2048 MB); machine code: the driver's JIT (no ptxas)");
  }
  {
    ScopedEnv a("NSAJIT_CACHE_DIR", nullptr), b("XDG_CACHE_HOME", nullptr), c("HOME", tmp.path().c_str());
    DiskCache::setGlobalForTesting(nullptr);
    EXPECT_EQ(DiskCache::global()->directory(), tmp / ".cache/nsajit");
  }
  {
    ScopedEnv a("NSAJIT_CACHE_DIR", "off");
    DiskCache::setGlobalForTesting(nullptr);
    EXPECT_EQ(DiskCache::global()->mode(), DiskCache::Mode::Off);
    char buf[512];
    ASSERT_EQ(nsajit_cache_info(buf, sizeof buf), NSAJIT_OK);
    EXPECT_NE(std::string(buf).find("disk cache: off"), std::string::npos) << buf;
  }
  DiskCache::setGlobalForTesting(std::make_shared<DiskCache>("", "unit tests")); // never the user's cache
}

TEST(DiskCache, UnwritableDirectoryDegradesToMemoryOnlyWithAWarning) {
  TempDir tmp;
  writeFile(tmp / "file", "not a directory");
  LogCapture log;
  // A path below a regular file cannot be created, even by root.
  std::string dir = tmp / "file/cache";
  DiskCache cache(dir);
  EXPECT_EQ(cache.mode(), DiskCache::Mode::Off);
  EXPECT_NE(cache.warning().find(dir), std::string::npos) << cache.warning();
  EXPECT_NE(cache.warning().find("memory only"), std::string::npos) << cache.warning();
  EXPECT_NE(cache.warning().find("NSAJIT_CACHE_DIR"), std::string::npos) << cache.warning();
  EXPECT_FALSE(cache.store(kKey, kPtx)); // no exception, no crash
  EXPECT_FALSE(cache.load(kKey).has_value());
  ASSERT_EQ(log.warnings().size(), 1u);
  EXPECT_EQ(log.warnings()[0], cache.warning());
  EXPECT_NE(cache.describe().find("disk cache: off"), std::string::npos);
}

TEST(DiskCache, ReadOnlyDirectoryStillServesExistingEntries) {
  if (::geteuid() == 0)
    GTEST_SKIP() << "running as root: directory permissions do not stop writes";
  TempDir tmp;
  {
    DiskCache writer(tmp.path());
    ASSERT_TRUE(writer.store(kKey, kPtx));
  }
  fs::permissions(tmp.path(), fs::perms::owner_read | fs::perms::owner_exec);
  DiskCache cache(tmp.path());
  EXPECT_EQ(cache.mode(), DiskCache::Mode::ReadOnly);
  EXPECT_EQ(cache.load(kKey).value_or(""), kPtx);
  EXPECT_FALSE(cache.store("other", "x"));
  fs::permissions(tmp.path(), fs::perms::owner_all);
}

TEST(DiskCache, DirectoryRemovedAfterOpeningDoesNotThrow) {
  TempDir tmp;
  std::string dir = tmp / "gone";
  DiskCache cache(dir);
  ASSERT_EQ(cache.mode(), DiskCache::Mode::ReadWrite);
  fs::remove_all(dir);
  LogCapture log;
  EXPECT_FALSE(cache.store(kKey, kPtx));
  EXPECT_FALSE(cache.load(kKey).has_value());
  EXPECT_FALSE(log.warnings().empty());
}

namespace {
// Sets a file's modification time to `secondsAgo` before now.
void ageFile(const std::string &path, int secondsAgo) {
  struct timespec times[2];
  ::clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= secondsAgo;
  times[1] = times[0];
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}
} // namespace

// Past the size limit the least recently used entries go (a load counts as a use),
// down to 90 % of the limit; the entry just written, the tuning database and other
// files stay.
TEST(DiskCache, EvictsTheLeastRecentlyUsedPastTheLimit) {
  TempDir dir;
  const std::string payload(10000, 'x'); // ~10 KB an entry
  DiskCache cache(dir.path(), "", 42000);  // room for 4 entries of ~10050 bytes
  std::filesystem::create_directories(dir / "tuning");
  std::ofstream(dir / "tuning/gpu.tsv") << "nsajit-tuning 1\n";
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(cache.store("key" + std::to_string(i), payload));
    ageFile(cache.pathFor("key" + std::to_string(i)), 1000 - 10 * i); // key0 oldest
  }
  EXPECT_EQ(cache.evictions(), 0u);
  ASSERT_TRUE(cache.load("key0")); // key0 becomes the most recently used
  ASSERT_TRUE(cache.store("key4", payload)); // 5 entries > 42000 bytes: evict to <= 37800
  EXPECT_EQ(cache.evictions(), 2u);
  EXPECT_TRUE(cache.load("key0")) << "recently loaded";
  EXPECT_FALSE(cache.load("key1")) << "the least recently used";
  EXPECT_FALSE(cache.load("key2"));
  EXPECT_TRUE(cache.load("key3"));
  EXPECT_TRUE(cache.load("key4")) << "just written";
  EXPECT_TRUE(std::filesystem::exists(dir / "tuning/gpu.tsv"));
  EXPECT_NE(cache.describe().find("at most 0 MB"), std::string::npos) << cache.describe();
}

TEST(DiskCache, SizeLimitFromTheEnvironment) {
  auto lookup = [](const char *value) {
    return [value](const char *name) -> const char * {
      return std::string(name) == "NSAJIT_CACHE_MAX_MB" ? value : nullptr;
    };
  };
  EXPECT_EQ(DiskCache::resolveMaxBytes(lookup(nullptr)), 2048ull << 20);
  EXPECT_EQ(DiskCache::resolveMaxBytes(lookup("100")), 100ull << 20);
  EXPECT_EQ(DiskCache::resolveMaxBytes(lookup("0")), 0u); // no limit
  EXPECT_EQ(DiskCache::resolveMaxBytes(lookup("-5")), 2048ull << 20);
  EXPECT_EQ(DiskCache::resolveMaxBytes(lookup("lots")), 2048ull << 20);
  TempDir dir;
  DiskCache unlimited(dir.path());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(unlimited.store("k" + std::to_string(i), std::string(100000, 'y')));
  EXPECT_EQ(unlimited.evictions(), 0u);
}
