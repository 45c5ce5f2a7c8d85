// GPU tests of the three backward branches (dq, dk, dv, dgate with the gated
// combination) against the float64 CPU reference, over the trainable issue's
// matrix: G in {1, 4, 16, 32}, (Dk, Dv) in {(64, 64), (128, 128), (192, 128)},
// (l, d, l') in {(64, 64, 64), (32, 16, 64)}, bf16 (and fp16 for a subset),
// gated and ungated, T = 100 and 700 (long sequences are checked against the
// PyTorch reference on the GPU, python/tests), the GPU's kernels and (a quarter
// of the cases) the sm_80 ones. Skips without a GPU.
//
// NSAJIT_GPU_TEST_JSON_BWD=<file> (NSAJIT_GPU_TEST_JSON_BWD_SPLIT for the split
// walks) writes one JSON record per case.
#include "ParallelPrepare.h"
#include "runtime/check/BackwardCheck.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <future>
#include <thread>
#include <vector>

using namespace nsajit::check;

namespace {

struct BwdCase {
  Case c;
  bool gated;
};

std::vector<BwdCase> matrix() {
  std::vector<BwdCase> cases;
  std::uint32_t seed = 1000;
  int variant = 0;
  for (auto [dk, dv] : {std::pair{64, 64}, std::pair{128, 128}, std::pair{192, 128}})
    for (int g : {1, 4, 16, 32})
      for (int t : {100, 700}) {
        ++variant;
        bool fp16 = variant % 5 == 0;
        int h = g <= 4 ? 2 : 1;
        const std::pair<int, int> lds[] = {{64, 64}, {32, 16}};
        auto [l, d] = lds[variant % 2];
        Case c{Br::Cmp, fp16, dk, dv, g, h, 1, t};
        c.l = l, c.d = d, c.lsel = 64, c.n = 8, c.w = t > 200 ? 128 : 512, c.padded = variant % 3 == 0;
        // A quarter of the variants forces the sm_80 (mma.sync) kernels; the rest run the
        // GPU's own (wgmma on sm_90a).
        c.arch = variant % 4 == 2 ? 80 : 0;
        for (Br br : {Br::Cmp, Br::Slc, Br::Swa}) {
          c.branch = br;
          c.seed = seed++;
          c.indices = (br == Br::Slc && variant % 4 == 0) ? IndexMode::Hostile : IndexMode::Valid;
          // The selected dQ kernel's schedules: the union of a CTA's tokens' blocks
          // (default), or one token a CTA (a third of the variants).
          c.tileTokens = br == Br::Slc && variant % 3 == 1 ? 1 : 0;
          cases.push_back({c, (variant + int(br)) % 2 == 0});
        }
      }
  // The selected dQ kernel's wgmma union tile (sm_90a; mma.sync elsewhere): 128 rows of
  // 128 / G tokens, 64-key chunks (the config's tile, which the dQ kernel follows), on
  // valid, local and hostile index lists.
  const IndexMode modes[] = {IndexMode::Valid, IndexMode::Local, IndexMode::Hostile};
  int m = 0;
  for (auto [dk, dv] : {std::pair{64, 64}, std::pair{128, 128}, std::pair{192, 128}})
    for (int g : {16, 32}) {
      Case c{Br::Slc, dk == 64, dk, dv, g, 1, 1, 700};
      c.lsel = 64, c.n = 8, c.seed = seed++, c.indices = modes[m++ % 3];
      c.tileTokens = 128 / g, c.tileKvChunk = 64;
      cases.push_back({c, g == 16});
    }
  // The default dQ schedule on sm_90a (two kernels, TokenDone.h) where some tiles'
  // unions pass the limit (5n/2 = 40 blocks) and are left to the second kernel: 16 and 8
  // tokens a tile (G = 4, 8) drawing n = 16 of the 43 blocks of T = 2700.
  for (int g : {4, 8}) {
    Case c{Br::Slc, false, 128, 128, g, 1, 1, 2700};
    c.lsel = 64, c.n = 16, c.seed = seed++;
    cases.push_back({c, g == 4});
  }
  // The selected dK/dV walk from its pivot (each window's list walked from its first token
  // at or after the block's start rounded up to 16 blocks, then wrapped around) on local
  // indices, whose lists cross the pivots at 1024 and 2048 tokens; two KV heads and two
  // batches for the CTA order that starts every head's first chunk first.
  {
    Case c{Br::Slc, false, 128, 128, 4, 2, 2, 2200};
    c.lsel = 64, c.n = 8, c.seed = seed++, c.indices = IndexMode::Local;
    cases.push_back({c, true});
  }
  // The compressed dK/dV walk over several key chunks (segment-major: every chunk's CTAs
  // split the same token segments, and the later chunks' first segments hold no token):
  // T = 2700 gives 167 compressed keys with l = 32, d = 16 (2 chunks of 128 on sm_90a, 3 of
  // 64 on sm_80) and 336 with l = 16, d = 8, in 3 segments (64 in the split matrix).
  {
    struct Cmp {
      int dk, dv, g, h, l, d, arch;
    };
    for (Cmp k : {Cmp{192, 128, 16, 1, 32, 16, 0}, Cmp{128, 128, 4, 2, 16, 8, 0}, Cmp{128, 128, 16, 1, 32, 16, 80}}) {
      Case c{Br::Cmp, false, k.dk, k.dv, k.g, k.h, 1, 2700};
      c.l = k.l, c.d = k.d, c.arch = k.arch, c.seed = seed++;
      cases.push_back({c, k.g == 16});
    }
  }
  // The other selection block sizes once each.
  for (int lsel : {16, 32, 128}) {
    Case c{Br::Slc, false, 128, 128, 16, 1, 2, 333};
    c.lsel = lsel, c.n = 5, c.seed = seed++;
    cases.push_back({c, true});
  }
  return cases;
}

// Runs the matrix on one context; `splitTokens` > 0 forces the split dK/dV
// walk (nsajit_context_set_backward_split) with that many tokens a CTA;
// `selectionMap` false makes the selected bwd_dkdv scan the index lists
// instead of walking the selection map (nsajit_context_set_selection_map_limit).
void runMatrix(int splitTokens, const char *jsonEnv, bool selectionMap = true) {
  std::string why;
  Device *dev = Device::open(why);
  if (!dev) GTEST_SKIP() << why << ": GPU backward tests skipped";
  nsajit_context *ctx = nullptr;
  ASSERT_EQ(nsajit_context_create(&ctx, 0), NSAJIT_OK) << nsajit_last_error();
  ASSERT_EQ(nsajit_context_set_backward_split(ctx, splitTokens), NSAJIT_OK) << nsajit_last_error();
  if (!selectionMap) {
    ASSERT_EQ(nsajit_context_set_selection_map_limit(ctx, 0), NSAJIT_OK) << nsajit_last_error();
  }

  std::vector<BwdCase> cases = matrix();
  std::printf("backward cases: %zu (dK/dV split: %s; selected dK/dV: %s)\n", cases.size(),
              splitTokens ? (std::to_string(splitTokens) + " tokens a CTA").c_str() : "automatic",
              selectionMap ? "selection map" : "index-list scan");
  ParallelPrepare<BackwardPrepared> prepared(cases.size(), [&](std::size_t i) {
    return prepareBackward(cases[i].c, cases[i].gated);
  });
  std::ofstream json;
  if (const char *path = std::getenv(jsonEnv)) json.open(path);
  int passed = 0, failed = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    BackwardPrepared p = prepared.get(i);
    BackwardOutcome r = runBackwardOnGpu(*dev, ctx, p);
    (r.ok ? passed : failed)++;
    std::string label = p.fwd.c.label() + (p.gated ? " gated" : "");
    std::printf("[%3zu/%zu] %s %-84s dq=%.2e dk=%.2e dv=%.2e dgate=%.2e %s\n", i + 1, cases.size(),
                r.ok ? "PASS" : "FAIL", label.c_str(), r.errDq, r.errDk, r.errDv, r.errDgate, r.error.c_str());
    std::fflush(stdout);
    auto num = [](double x) { return std::isfinite(x) ? x : 1e30; };
    if (json)
      json << "{\"case\":\"" << label << "\",\"split\":" << splitTokens << ",\"pass\":" << (r.ok ? "true" : "false")
           << ",\"dq\":" << num(r.errDq) << ",\"dk\":" << num(r.errDk) << ",\"dv\":" << num(r.errDv)
           << ",\"dgate\":" << num(r.errDgate) << "}\n";
    EXPECT_TRUE(r.ok) << label << ": " << r.error;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  nsajit_context_destroy(ctx);
}

TEST(GpuBackward, MatrixAgainstReference) { runMatrix(0, "NSAJIT_GPU_TEST_JSON_BWD"); }

// The same matrix with every long dK/dV walk split: 40 tokens a CTA gives up
// to 18 splits at T = 700 (some of them empty: the window's last chunks, the
// compressed keys near the end), whose partial sums meet in the workspace.
TEST(GpuBackward, SplitWalksAgainstReference) { runMatrix(40, "NSAJIT_GPU_TEST_JSON_BWD_SPLIT"); }

// The selected dK/dV kernel's other walk: without a selection map (a limit of
// 0 bytes; long sequences past the limit take it) it scans the index lists.
TEST(GpuBackward, IndexScanWalksAgainstReference) {
  runMatrix(0, "NSAJIT_GPU_TEST_JSON_BWD_SCAN", /*selectionMap=*/false);
}

} // namespace
