// The autotuner's pure parts: the tuning database file (parse, format, lookup,
// merge on save), the tile search space, and the choice of the best tile.
#include "TestUtil.h"
#include "Tuner.h"
#include "TuningDb.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

using namespace nsajit;
using namespace nsajit::rt;
using namespace nsajit::rt::test;

namespace {

KernelSpec forwardSpec(Branch branch, int group, int dk = 128) {
  KernelSpec s;
  s.branch = branch;
  s.pass = KernelPass::Forward;
  s.arch = Arch::SM90a;
  s.headDimQK = dk;
  s.headDimV = 128;
  s.group = group;
  return s;
}

TuningEntry entry(const std::string &key, std::int64_t tokens, TileConfig tile) {
  TuningEntry e;
  e.key = key;
  e.tokens = tokens;
  e.tile = tile;
  e.bestMs = 1.5;
  e.defaultMs = 2.0;
  return e;
}

} // namespace

TEST(TuningDb, FormatAndParseRoundTrip) {
  std::vector<TuningEntry> in = {entry("spec a", 16384, {4, 4, 64}), entry("spec b", 1024, {1, 1, 32})};
  std::string warning;
  std::vector<TuningEntry> out = TuningDb::parse(TuningDb::format(in), &warning);
  EXPECT_EQ(warning, "");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].key, "spec a");
  EXPECT_EQ(out[0].tokens, 16384);
  EXPECT_EQ(out[0].tile, (TileConfig{4, 4, 64}));
  EXPECT_DOUBLE_EQ(out[1].bestMs, 1.5);
  EXPECT_DOUBLE_EQ(out[1].defaultMs, 2.0);
}

TEST(TuningDb, DamagedFilesAreSkippedWithAWarning) {
  std::string warning;
  EXPECT_TRUE(TuningDb::parse("something else\nkey\t1\t1\t1\t16\t1\t1\n", &warning).empty());
  EXPECT_NE(warning.find("not a tuning database"), std::string::npos);
  std::string text = TuningDb::format({entry("good", 100, {2, 1, 16})});
  text += "bad line without tabs\n";
  text += "key\t-5\t1\t1\t16\t1\t1\t0\n";       // negative size
  text += "key\t100\t1\t1\t16\tnan\t1\t0\n";    // not a time
  text += "key\t100\t0\t1\t16\t1\t1\t0\n";      // no warps
  text += "key\t10x\t1\t1\t16\t1\t1\t0\n";      // trailing junk
  text += "key\t100\t1\t1\t16\t1\t1\t-64\n";    // negative split
  text += "key\t100\t1\t1\t16\t1\t1\n";          // a format-1 line in a format-2 file
  std::vector<TuningEntry> out = TuningDb::parse(text, &warning);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].key, "good");
  EXPECT_NE(warning.find("7 malformed"), std::string::npos) << warning;
}

TEST(TuningDb, BackwardSplitsRoundTripAndFormat1FilesStillRead) {
  TuningEntry b = entry("bwd_dkdv spec", 65536, {8, 2, 128});
  b.splitTokens = 4096;
  std::string text = TuningDb::format({entry("fwd spec", 65536, {8, 8, 64}), b});
  EXPECT_EQ(text.substr(0, text.find('\n')), "nsajit-tuning 2");
  std::vector<TuningEntry> out = TuningDb::parse(text, nullptr);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].splitTokens, 0);
  EXPECT_EQ(out[1].splitTokens, 4096);
  TuningDb db("");
  db.record(b);
  std::optional<TuningEntry> found = db.lookupEntry("bwd_dkdv spec", 60000);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->splitTokens, 4096);
  EXPECT_FALSE(db.lookupEntry("other", 60000));
  // A file written by an nsajit before the backward's tuner: 7 columns, no split.
  std::string warning;
  out = TuningDb::parse("nsajit-tuning 1\nkey\t100\t2\t1\t16\t1.5\t2\n", &warning);
  EXPECT_EQ(warning, "");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].tile, (TileConfig{2, 1, 16}));
  EXPECT_EQ(out[0].splitTokens, 0);
}

TEST(BackwardSplitCandidates, AutomaticFirstThenLengthsOfDistinctSplits) {
  // Splits of a walk of `walk` tokens: ceil(walk / length), automatic = 1024 tokens.
  auto walkOf = [](int walk) {
    return [walk](int tokens) { return (walk + (tokens ? tokens : 1024) - 1) / (tokens ? tokens : 1024); };
  };
  EXPECT_EQ(backwardSplitCandidates(walkOf(10000), 10000), (std::vector<int>{0, 256, 512, 2048, 4096, 8192, 10000}));
  // Short sequences: lengths below seq_len, then no split, none repeating a split count.
  EXPECT_EQ(backwardSplitCandidates(walkOf(300), 300), (std::vector<int>{0, 256}));
  auto capped = [](int tokens) { return std::min(64, (40000 + std::max(tokens, 1) - 1) / std::max(tokens, 1)); };
  // 256 and 512 both hit the cap of 64 splits (as automatic 0 does here): only one stays.
  std::vector<int> c = backwardSplitCandidates(capped, 40000);
  EXPECT_EQ(c.front(), 0);
  EXPECT_EQ(std::count(c.begin(), c.end(), 256) + std::count(c.begin(), c.end(), 512), 0);
  EXPECT_EQ(c.back(), 40000);
}

TEST(TuningDb, LookupTakesTheNearestProblemSize) {
  TuningDb db("");
  EXPECT_FALSE(db.lookup("k", 1000));
  db.record(entry("k", 1024, {1, 1, 16}));
  db.record(entry("k", 65536, {2, 1, 64}));
  db.record(entry("other", 4096, {8, 1, 128}));
  EXPECT_EQ(db.lookup("k", 1), (TileConfig{1, 1, 16}));
  EXPECT_EQ(db.lookup("k", 4096), (TileConfig{1, 1, 16}));  // log2 distance 2 against 4
  EXPECT_EQ(db.lookup("k", 16384), (TileConfig{2, 1, 64})); // 4 against 2
  EXPECT_EQ(db.lookup("k", 1 << 20), (TileConfig{2, 1, 64}));
  db.record(entry("k", 1024, {4, 1, 32})); // replaces the entry of the same size
  EXPECT_EQ(db.lookup("k", 1024), (TileConfig{4, 1, 32}));
  EXPECT_EQ(db.entries().size(), 3u);
}

TEST(TuningDb, SavesAtomicallyAndMergesWhatOthersWrote) {
  TempDir dir;
  const std::string path = dir / "tuning/gpu.tsv";
  {
    TuningDb a(path);
    EXPECT_TRUE(a.record(entry("a", 100, {1, 1, 16})));
  }
  TuningDb first(path), second(path);
  EXPECT_TRUE(first.record(entry("b", 100, {2, 1, 32})));
  EXPECT_TRUE(second.record(entry("c", 100, {4, 1, 64}))); // must keep b, written after second was opened
  TuningDb reread(path);
  EXPECT_EQ(reread.entries().size(), 3u);
  EXPECT_EQ(reread.lookup("b", 100), (TileConfig{2, 1, 32}));
  EXPECT_EQ(reread.lookup("c", 100), (TileConfig{4, 1, 64}));
  EXPECT_EQ(reread.warning(), "");
}

TEST(TuningDb, UnwritableDirectoryKeepsTheEntryInMemory) {
  TuningDb db("/proc/nsajit-cannot-write/tuning/gpu.tsv");
  EXPECT_FALSE(db.record(entry("a", 100, {1, 1, 16})));
  EXPECT_NE(db.warning().find("cannot"), std::string::npos) << db.warning();
  EXPECT_EQ(db.lookup("a", 100), (TileConfig{1, 1, 16}));
}

TEST(TuningDb, KeyIgnoresTheTileAndNamesTheCodegen) {
  KernelSpec a = forwardSpec(Branch::Window, 16), b = a;
  b.tile = {8, 8, 128};
  EXPECT_EQ(tuningKey(a), tuningKey(b));
  EXPECT_NE(tuningKey(a).find("codegen"), std::string::npos);
  b.window = a.window + 1;
  EXPECT_NE(tuningKey(a), tuningKey(b));
  EXPECT_EQ(tuningFileStem("NVIDIA H100 80GB HBM3", 9, 0), "NVIDIA_H100_80GB_HBM3-sm90");
  EXPECT_EQ(tuningFileStem("../x/y", 8, 6), "___x_y-sm86");
}

TEST(TileCandidates, DefaultFirstAllValidWithinSharedMemory) {
  for (Branch branch : {Branch::Compressed, Branch::Selected, Branch::Window})
    for (int group : {1, 4, 16, 32})
      for (int dk : {64, 128, 192}) {
        KernelSpec s = forwardSpec(branch, group, dk);
        if (dk < 128)
          s.headDimV = dk;
        const int limit = 100 * 1024;
        std::vector<TileConfig> c = tileCandidates(s, limit);
        ASSERT_FALSE(c.empty());
        EXPECT_EQ(c[0], defaultTileConfig(s)) << s.str();
        for (std::size_t i = 0; i < c.size(); ++i) {
          KernelSpec t = s;
          t.tile = c[i];
          EXPECT_EQ(validate(t), "") << t.str();
          if (i > 0) {
            EXPECT_LE(sharedMemoryBytes(t), limit) << t.str();
          }
          if (branch == Branch::Selected && c[i].tokensPerCta == 1) {
            EXPECT_EQ(c[i].warps, std::max(1, group / 16)) << "per-token tiles have no idle warp";
          } else if (i > 0) {
            EXPECT_EQ(c[i].tokensPerCta * group, c[i].warps * 16) << "tiles fill their MMA rows";
          }
          if (branch == Branch::Selected && group <= 16 && c[i].warps == std::max(1, group / 16))
            EXPECT_TRUE(std::count(c.begin(), c.end(), TileConfig{c[i].warps, 1, c[i].kvChunk}) ||
                        sharedMemoryBytes(t) > limit)
                << "both schedules are candidates: " << t.str();
          for (std::size_t j = 0; j < i; ++j) {
            EXPECT_FALSE(c[i] == c[j]) << "duplicate tile";
          }
        }
        if (branch != Branch::Selected) {
          EXPECT_GT(c.size(), 4u) << s.str();
        }
      }
}

TEST(PickBest, TheDefaultWinsUnlessAnotherIsClearlyFaster) {
  std::vector<TileConfig> c = {{4, 4, 64}, {1, 1, 16}, {2, 2, 32}, {8, 8, 128}};
  auto times = [](double def, double a, double b) {
    return [=](const TileConfig &t) {
      if (t.warps == 4) return def;
      if (t.warps == 1) return a;
      if (t.warps == 8) fail(NSAJIT_ERROR_UNSUPPORTED, "too many registers");
      return b;
    };
  };
  int calls = 0;
  TuneResult r = pickBest(c, times(1.0, 0.99, 1.5), [&](int done, int total, const TileConfig &, double ms) {
    ++calls;
    EXPECT_EQ(total, 4);
    if (done == 4) {
      EXPECT_LT(ms, 0); // the failing tile
    }
  });
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(r.best, c[0]) << "1% is noise";
  EXPECT_EQ(r.failed, 1);
  EXPECT_EQ(r.candidates, 4);
  r = pickBest(c, times(1.0, 0.5, 0.7), nullptr);
  EXPECT_EQ(r.best, c[1]);
  EXPECT_DOUBLE_EQ(r.bestMs, 0.5);
  EXPECT_DOUBLE_EQ(r.defaultMs, 1.0);
  EXPECT_THROW(pickBest({{8, 8, 128}}, times(1, 1, 1), nullptr), Error);
}

TEST(LocalIndices, ForcedNearAndFewFarBlocksAscendingAndDistinct) {
  std::mt19937 rng(7);
  const int T = 4000, H = 2, n = 16, block = 64;
  std::vector<std::int32_t> idx = localIndices(1, T, H, n, block, rng);
  ASSERT_EQ(idx.size(), std::size_t(T) * H * n);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      const std::int32_t *row = idx.data() + (std::size_t(t) * H + h) * n;
      const int c = t / block;
      const int valid = static_cast<int>(std::count_if(row, row + n, [](std::int32_t j) { return j >= 0; }));
      ASSERT_EQ(valid, std::min(n, c + 1)) << "t = " << t;
      ASSERT_TRUE(std::is_sorted(row, row + valid)) << "t = " << t;
      ASSERT_EQ(std::adjacent_find(row, row + valid), row + valid) << "t = " << t; // distinct
      ASSERT_LE(row[valid - 1], c);
      ASSERT_EQ(row[0], 0);
      ASSERT_TRUE(std::binary_search(row, row + valid, c));
      if (c >= 1) {
        ASSERT_TRUE(std::binary_search(row, row + valid, c - 1));
      }
      // Beyond the 16 near blocks: at most the two far draws once the near ones fill n.
      if (c > 20) {
        const int far = static_cast<int>(std::count_if(row + 1, row + valid, [&](std::int32_t j) { return j < c - 16; }));
        ASSERT_LE(far, 2) << "t = " << t;
      }
    }
}
