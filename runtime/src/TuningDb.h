// The persistent tuning database: the best tile found by the autotuner for a
// kernel spec on one GPU model, kept as a text file in the cache directory
// ($NSAJIT_CACHE_DIR/tuning/<device>.tsv, see DiskCache) and read by the
// runtime, so tuned tiles are used without being asked for (a config whose
// tile fields are 0). NSAJIT_TUNING=off ignores the database.
//
// File format (tab separated, one line per tuned (spec, problem size)):
//   nsajit-tuning 2
//   <key> <tokens> <warps> <tokens_per_cta> <kv_chunk> <best_ms> <default_ms> <split_tokens>
// A forward kernel's entry gives its tile (split_tokens 0); a bwd_dkdv
// kernel's entry (tuneBackward) gives the split length of its token walk
// (0: automatic) and its default tile. Files of format 1 (no split_tokens
// column) are read as well.
// `key` is tuningKey(spec): the spec without its tile, plus the codegen
// revision (a new code generator invalidates old timings). `tokens` is B x T of
// the tuning run; a lookup takes the entry nearest in log2(tokens). Unreadable
// lines are skipped with a warning; writes replace the file atomically.
#pragma once

#include "nsajit/compiler/KernelSpec.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace nsajit::rt {

struct TuningEntry {
  std::string key;
  std::int64_t tokens = 0; // batch x sequence length of the tuning run
  TileConfig tile;
  double bestMs = 0;
  double defaultMs = 0;    // the default tile's time in the same run
  int splitTokens = 0;     // bwd_dkdv entries: the split length of the walk (0: automatic)
};

// The spec's identity for tuning: everything but its tile, plus the codegen revision.
std::string tuningKey(const KernelSpec &spec);

// "<device name>-sm<cc>" reduced to [A-Za-z0-9_-], e.g. "NVIDIA_H100_80GB_HBM3-sm90".
std::string tuningFileStem(const std::string &deviceName, int ccMajor, int ccMinor);

class TuningDb {
public:
  // `path` = "" : an in-memory database that is never saved (no cache directory).
  explicit TuningDb(std::string path);

  // The tuned tile for `key` nearest to `tokens`, if any.
  std::optional<TileConfig> lookup(const std::string &key, std::int64_t tokens) const;
  std::optional<TuningEntry> lookupEntry(const std::string &key, std::int64_t tokens) const;
  // Adds or replaces the entry of (key, tokens) and saves the file. Returns false
  // (and sets warning()) when the file could not be written; the entry is kept in memory.
  bool record(const TuningEntry &entry);

  std::vector<TuningEntry> entries() const;
  // No entries: launches skip building the lookup key (the common, untuned case).
  bool empty() const { return count_.load(std::memory_order_relaxed) == 0; }
  const std::string &path() const { return path_; }
  std::string warning() const;

  // Parsing and printing of the file (exposed for tests).
  static std::vector<TuningEntry> parse(const std::string &text, std::string *warning);
  static std::string format(const std::vector<TuningEntry> &entries);

private:
  bool saveLocked();
  std::string path_;
  mutable std::mutex mutex_;
  std::vector<TuningEntry> entries_;
  std::atomic<std::size_t> count_{0}; // entries_.size(), readable without the mutex
  std::string warning_;
};

} // namespace nsajit::rt
