#include "TuningDb.h"

#include "KernelCache.h"

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace nsajit::rt {

namespace {

constexpr const char *kHeader = "nsajit-tuning 2";
constexpr const char *kHeaderV1 = "nsajit-tuning 1"; // no split_tokens column

// mkdir -p of the parent directory of `path`.
void makeParents(const std::string &path) {
  for (std::size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1))
    ::mkdir(path.substr(0, pos).c_str(), 0755);
}

} // namespace

std::string tuningKey(const KernelSpec &spec) {
  KernelSpec s = spec;
  s.tile = TileConfig{};
  return s.str() + " | " + compilerVersionString(); // computed once; works without the compiler too
}

std::string tuningFileStem(const std::string &deviceName, int ccMajor, int ccMinor) {
  std::string stem;
  for (char c : deviceName)
    stem += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  if (stem.empty())
    stem = "gpu";
  return fmt::format("{}-sm{}{}", stem, ccMajor, ccMinor);
}

TuningDb::TuningDb(std::string path) : path_(std::move(path)) {
  if (path_.empty())
    return;
  std::ifstream in(path_);
  if (!in)
    return; // nothing tuned yet
  std::stringstream text;
  text << in.rdbuf();
  entries_ = parse(text.str(), &warning_);
  count_ = entries_.size();
}

std::vector<TuningEntry> TuningDb::parse(const std::string &text, std::string *warning) {
  std::vector<TuningEntry> out;
  std::istringstream in(text);
  std::string line;
  int lineNo = 0, bad = 0;
  bool version1 = false;
  while (std::getline(in, line)) {
    ++lineNo;
    if (lineNo == 1) {
      version1 = line == kHeaderV1;
      if (line != kHeader && !version1) {
        if (warning)
          *warning = fmt::format("not a tuning database (first line is not '{}'): ignored", kHeader);
        return {};
      }
      continue;
    }
    if (line.empty())
      continue;
    std::vector<std::string> f;
    std::size_t start = 0;
    for (std::size_t tab; (tab = line.find('\t', start)) != std::string::npos; start = tab + 1)
      f.push_back(line.substr(start, tab - start));
    f.push_back(line.substr(start));
    TuningEntry e;
    bool ok = f.size() == (version1 ? 7u : 8u) && !f[0].empty();
    if (ok) {
      char *end = nullptr;
      auto integer = [&](const std::string &s) {
        errno = 0;
        long long v = std::strtoll(s.c_str(), &end, 10);
        ok = ok && errno == 0 && end && *end == '\0' && !s.empty();
        return v;
      };
      auto real = [&](const std::string &s) {
        double v = std::strtod(s.c_str(), &end);
        ok = ok && end && *end == '\0' && !s.empty() && std::isfinite(v) && v >= 0;
        return v;
      };
      e.key = f[0];
      e.tokens = integer(f[1]);
      e.tile.warps = static_cast<int>(integer(f[2]));
      e.tile.tokensPerCta = static_cast<int>(integer(f[3]));
      e.tile.kvChunk = static_cast<int>(integer(f[4]));
      e.bestMs = real(f[5]);
      e.defaultMs = real(f[6]);
      e.splitTokens = version1 ? 0 : static_cast<int>(integer(f[7]));
      ok = ok && e.tokens > 0 && e.tile.warps > 0 && e.tile.tokensPerCta > 0 && e.tile.kvChunk > 0 && e.splitTokens >= 0;
    }
    if (ok)
      out.push_back(std::move(e));
    else
      ++bad;
  }
  if (bad && warning)
    *warning = fmt::format("{} malformed line(s) skipped", bad);
  return out;
}

std::string TuningDb::format(const std::vector<TuningEntry> &entries) {
  std::string s = std::string(kHeader) + "\n";
  for (const TuningEntry &e : entries)
    s += fmt::format("{}\t{}\t{}\t{}\t{}\t{:.6g}\t{:.6g}\t{}\n", e.key, e.tokens, e.tile.warps, e.tile.tokensPerCta,
                     e.tile.kvChunk, e.bestMs, e.defaultMs, e.splitTokens);
  return s;
}

std::optional<TileConfig> TuningDb::lookup(const std::string &key, std::int64_t tokens) const {
  std::optional<TuningEntry> e = lookupEntry(key, tokens);
  if (!e)
    return std::nullopt;
  return e->tile;
}

std::optional<TuningEntry> TuningDb::lookupEntry(const std::string &key, std::int64_t tokens) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const TuningEntry *best = nullptr;
  double bestDistance = 0;
  for (const TuningEntry &e : entries_) {
    if (e.key != key)
      continue;
    double distance = std::fabs(std::log2(static_cast<double>(e.tokens)) -
                                std::log2(static_cast<double>(std::max<std::int64_t>(1, tokens))));
    if (!best || distance < bestDistance) {
      best = &e;
      bestDistance = distance;
    }
  }
  if (!best)
    return std::nullopt;
  return *best;
}

bool TuningDb::record(const TuningEntry &entry) {
  std::lock_guard<std::mutex> lock(mutex_);
  bool replaced = false;
  for (TuningEntry &e : entries_)
    if (e.key == entry.key && e.tokens == entry.tokens) {
      e = entry;
      replaced = true;
    }
  if (!replaced)
    entries_.push_back(entry);
  const bool saved = saveLocked();
  count_ = entries_.size();
  return saved;
}

bool TuningDb::saveLocked() {
  if (path_.empty())
    return true;
  // Merge with what another process may have written since we read the file.
  std::vector<TuningEntry> merged;
  {
    std::ifstream in(path_);
    if (in) {
      std::stringstream text;
      text << in.rdbuf();
      for (TuningEntry &e : parse(text.str(), nullptr)) {
        bool ours = false;
        for (const TuningEntry &m : entries_)
          ours = ours || (m.key == e.key && m.tokens == e.tokens);
        if (!ours)
          merged.push_back(std::move(e));
      }
    }
  }
  merged.insert(merged.end(), entries_.begin(), entries_.end());
  makeParents(path_);
  const std::string tmp = fmt::format("{}.tmp.{}", path_, ::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << format(merged);
    if (!out.flush()) {
      warning_ = fmt::format("cannot write {}: {}", tmp, std::strerror(errno));
      std::remove(tmp.c_str());
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    warning_ = fmt::format("cannot rename {} to {}: {}", tmp, path_, std::strerror(errno));
    std::remove(tmp.c_str());
    return false;
  }
  entries_ = std::move(merged);
  return true;
}

std::vector<TuningEntry> TuningDb::entries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_;
}

std::string TuningDb::warning() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return warning_;
}

} // namespace nsajit::rt
