// GPU tests of the fused block scoring + top-n kernel against the float64
// reference selection: G in {1, 4, 16, 32}, (l, d, l') in {(64, 64, 64),
// (32, 16, 64), (32, 16, 32)}, n in {4, 16}, T from below one block to 4096,
// forced blocks (1, 2) and (0, 0). The default tile holds several tokens per
// CTA (G = 32: 4, G = 16: 8, G = 8: 8, G = 4: 16, G = 1: 32), so further cases take
// lengths that leave a partial last CTA, two batch elements, and enough blocks
// for several windows per CTA. A fifth of the cases force the sm_80 kernels
// (the others score with wgmma on sm_90a where the tile has whole warpgroups).
// Skips without a GPU.
#include "ParallelPrepare.h"
#include "runtime/check/TopNCheck.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <thread>
#include <vector>

using namespace nsajit::check;

TEST(GpuTopN, MatrixAgainstReference) {
  std::string why;
  Device *dev = Device::open(why);
  if (!dev) GTEST_SKIP() << why << ": GPU top-n tests skipped";
  nsajit_context *ctx = nullptr;
  ASSERT_EQ(nsajit_context_create(&ctx, 0), NSAJIT_OK) << nsajit_last_error();

  struct TopNCase { Case c; int initial, local; };
  std::vector<TopNCase> cases;
  std::uint32_t seed = 5000;
  int variant = 0;
  for (int g : {1, 4, 16, 32})
    for (auto [l, d, lsel] : {std::tuple{64, 64, 64}, std::tuple{32, 16, 64}, std::tuple{32, 16, 32}})
      for (int t : {50, 700, 4096}) {
        ++variant;
        Case c{Br::Cmp, variant % 4 == 0, 128, 128, g, g <= 4 ? 2 : 1, 1, t};
        c.l = l, c.d = d, c.lsel = lsel, c.n = variant % 2 ? 16 : 4, c.seed = seed++;
        if (g == 16 && t == 4096) c.dk = 192;
        c.arch = variant % 5 == 2 ? 80 : 0; // some cases force the sm_80 (mma.sync) kernels
        cases.push_back({c, variant % 3 ? 1 : 0, variant % 3 ? 2 : 0});
      }
  // {G, l, d, l', n, T, B, Dk}: T is not a multiple of the tile's tokens; the
  // long ones need several windows of blocks (G = 8 and G = 16 with Dk = 128:
  // 128 blocks a window; Dk = 192 on sm_90a: 64), n = 48 lists wider than a warp.
  struct Extra { int g, l, d, lsel, n, t, b, dk = 128; };
  for (Extra e : {Extra{16, 32, 16, 64, 16, 1027, 2}, Extra{4, 32, 16, 64, 16, 1031, 2},
                  Extra{1, 32, 16, 32, 16, 3001, 2}, Extra{32, 64, 64, 64, 4, 333, 2},
                  Extra{8, 32, 16, 64, 16, 9001, 1}, Extra{16, 32, 16, 64, 16, 8300, 1},
                  Extra{16, 32, 16, 64, 16, 12001, 1, 192}, Extra{2, 32, 16, 64, 16, 5003, 1, 192},
                  Extra{16, 32, 16, 32, 48, 6007, 1, 192}, Extra{8, 64, 64, 64, 48, 7001, 1}}) {
    ++variant;
    Case c{Br::Cmp, variant % 2 == 0, 128, 128, e.g, e.t > 4096 ? 1 : 2, e.b, e.t};
    c.l = e.l, c.d = e.d, c.lsel = e.lsel, c.n = e.n, c.seed = seed++, c.dk = e.dk;
    cases.push_back({c, 1, 2});
  }
  std::printf("top-n cases: %zu\n", cases.size());
  ParallelPrepare<TopNPrepared> prepared(cases.size(), [&](std::size_t i) {
    return prepareTopN(cases[i].c, cases[i].initial, cases[i].local);
  });
  std::ofstream json;
  if (const char *path = std::getenv("NSAJIT_GPU_TEST_JSON_TOPN")) json.open(path);
  int passed = 0, failed = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    TopNPrepared p = prepared.get(i);
    TopNOutcome r = runTopNOnGpu(*dev, ctx, p);
    (r.ok ? passed : failed)++;
    std::string label = p.fwd.c.label() + " l'=" + std::to_string(p.fwd.c.lsel) + " n=" + std::to_string(p.fwd.c.n) +
                        " forced=" + std::to_string(p.initial) + "+" + std::to_string(p.local);
    std::printf("[%2zu/%zu] %s %-90s mismatching rows=%ld (near ties %ld) %s\n", i + 1, cases.size(),
                r.ok ? "PASS" : "FAIL", label.c_str(), r.mismatches, r.nearTies, r.error.c_str());
    std::fflush(stdout);
    if (json)
      json << "{\"case\":\"" << label << "\",\"pass\":" << (r.ok ? "true" : "false") << ",\"mismatching_rows\":"
           << r.mismatches << ",\"near_ties\":" << r.nearTies << "}\n";
    EXPECT_TRUE(r.ok) << label << ": " << r.error;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  nsajit_context_destroy(ctx);
}
