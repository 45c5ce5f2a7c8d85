// GPU tests of the three forward branches against the float64 CPU reference,
// over the configuration matrix of the spine issue: Dk/Dv in {64..256} with
// Dv <= Dk, G in {1..32}, l' in {16..128}, bf16 and fp16, B = 2, T below a
// block and T not a multiple of any block, strided (padded) tensors, queries
// that see no complete compressed block, hostile selection indices, the
// selected branch's union schedule (several tokens per CTA) on local indices,
// and on sm_90a GPUs both tensor-core paths of the dense branches (wgmma for
// tiles of whole warpgroups, one or two, and the sm_80 mma.sync kernels), the
// selected branch's warp-specialised union tiles, and (its cases with default
// tiles) its two-kernel schedule.
// Without a GPU every test prints "no CUDA device" and is skipped.
//
// NSAJIT_GPU_TEST_JSON=<file> writes one JSON record per case;
// NSAJIT_GPU_TEST_QUICK=1 runs a small subset.
#include "ParallelPrepare.h"
#include "runtime/check/ForwardCheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace nsajit;
using namespace nsajit::check;

namespace {

std::vector<Case> matrix() {
  bool quick = std::getenv("NSAJIT_GPU_TEST_QUICK") != nullptr;
  std::vector<std::pair<int, int>> dims = {{64, 64}, {128, 64}, {128, 128}, {192, 64},  {192, 128},
                                           {192, 192}, {256, 64}, {256, 128}, {256, 192}, {256, 256}};
  std::vector<int> groups = {1, 2, 4, 8, 16, 32};
  if (quick) dims = {{128, 128}, {192, 128}}, groups = {1, 16};
  std::vector<Case> cases;
  std::uint32_t seed = 1;
  int variant = 0;
  // First (a run cut short by its time limit still covers them): the selected
  // branch's warp-specialised union tiles (sm_90a; elsewhere the
  // same tiles run on mma.sync): 8 warps whose tokens fill the 128 rows, with
  // 64- and 32-key chunks, several tiles a CTA and a partial last one, every
  // kind of indices, G = 16 and 32, Dk up to 256.
  const std::pair<int, int> wsDims[] = {{128, 128}, {192, 128}, {256, 256}, {64, 64}};
  for (int i = 0; i < (quick ? 2 : 4); ++i)
    for (int g : {16, 32})
      for (IndexMode mode : {IndexMode::Local, IndexMode::Valid, IndexMode::Hostile}) {
        Case c{Br::Slc, i % 2 == 1, wsDims[i].first, wsDims[i].second, g, 2, 2, 0};
        c.lsel = 64, c.n = i == 3 ? 4 : 16, c.tileWarps = 8, c.tileTokens = 128 / g;
        c.tileKvChunk = i == 1 ? 32 : 64, c.indices = mode, c.padded = (i == 2);
        c.t = mode == IndexMode::Local ? 1100 : 333, c.seed = seed++;
        cases.push_back(c);
      }
  for (bool fp16 : {false, true})
    for (auto [dk, dv] : dims)
      for (int g : groups) {
        int h = g <= 4 ? 2 : 1;
        Case base{Br::Cmp, fp16, dk, dv, g, h, 2, 0};
        ++variant;
        // Compressed: the paper's overlapping l=32,d=16 and l=d=64; one T below l.
        const std::pair<int, int> cmpShapes[] = {{32, 16}, {64, 64}, {16, 8}};
        Case c = base;
        c.l = cmpShapes[variant % 3].first, c.d = cmpShapes[variant % 3].second;
        for (int t : {c.l - 3, 203}) {
          c.t = t, c.seed = seed++, c.padded = (variant % 4 == 0);
          cases.push_back(c);
        }
        // Both tensor-core paths: the GPU's kernels (on sm_90a wgmma, 8 warps
        // by default) with one warpgroup or two, and the sm_80 mma.sync kernels.
        c.t = 203, c.seed = seed++, c.tileWarps = variant % 2 ? 4 : 8;
        cases.push_back(c);
        c.seed = seed++, c.arch = 80, c.tileWarps = variant % 2 ? 8 : 0;
        cases.push_back(c);
        // Window: w below, around and above T.
        c = base;
        c.branch = Br::Swa;
        const int windows[] = {64, 100, 512};
        c.w = windows[variant % 3];
        for (int t : {37, 203}) {
          c.t = t, c.seed = seed++, c.padded = (variant % 4 == 1);
          cases.push_back(c);
        }
        c.t = 203, c.seed = seed++, c.tileWarps = variant % 2 ? 8 : 4;
        cases.push_back(c);
        c.seed = seed++, c.arch = 80, c.tileWarps = variant % 2 ? 0 : 8;
        cases.push_back(c);
        // Selected: every l', T below one block and T not a multiple of it.
        for (int lsel : {16, 32, 64, 128}) {
          c = base;
          c.branch = Br::Slc, c.lsel = lsel, c.n = 4;
          for (int t : {lsel - 5, 2 * lsel + 7}) {
            c.t = t, c.seed = seed++, c.padded = (variant % 4 == 2);
            c.indices = (seed % 7 == 0) ? IndexMode::Hostile : IndexMode::Valid;
            cases.push_back(c);
          }
        }
        // Selected, union schedule: several tokens per CTA (a partial last CTA),
        // local indices with repeats, random and hostile ones.
        c = base;
        c.branch = Br::Slc, c.lsel = variant % 2 ? 32 : 64, c.n = 6;
        const int unionTokens[] = {2, 4, 8, 16};
        c.tileTokens = std::min(unionTokens[variant % 4], std::max(2, 128 / g));
        const IndexMode modes[] = {IndexMode::Local, IndexMode::Valid, IndexMode::Hostile};
        for (int t : {7 * c.lsel + 5, 3 * c.lsel - 1}) {
          c.t = t, c.seed = seed++, c.padded = (variant % 4 == 3);
          c.indices = modes[(variant + t) % 3];
          cases.push_back(c);
        }
      }
  return cases;
}

class GpuForward : public ::testing::Test {
protected:
  void SetUp() override {
    std::string why;
    dev = Device::open(why);
    if (!dev) GTEST_SKIP() << why << ": GPU forward tests skipped";
    ASSERT_EQ(nsajit_context_create(&ctx, 0), NSAJIT_OK) << nsajit_last_error();
  }
  void TearDown() override {
    if (ctx) nsajit_context_destroy(ctx);
  }
  Device *dev = nullptr;
  nsajit_context *ctx = nullptr;
};

TEST_F(GpuForward, MatrixAgainstReference) {
  std::vector<Case> cases = matrix();
  char info[512] = {0};
  nsajit_device_info(ctx, info, sizeof info);
  std::printf("device: %s\ncases: %zu\n", info, cases.size());

  // References in parallel on the CPU, GPU runs in order as they become ready.
  ParallelPrepare<Prepared> prepared(cases.size(), [&](std::size_t i) { return prepare(cases[i]); });

  const char *jsonPath = std::getenv("NSAJIT_GPU_TEST_JSON");
  std::ofstream json;
  if (jsonPath) json.open(jsonPath);
  int passed = 0, failed = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    Prepared p = prepared.get(i);
    Outcome r = runOnGpu(*dev, ctx, p);
    (r.ok ? passed : failed)++;
    std::printf("[%4zu/%zu] %s %-80s rel_err=%.3e lse_abs_err=%.3e %s\n", i + 1, cases.size(),
                r.ok ? "PASS" : "FAIL", p.c.label().c_str(), r.relErr, r.lseErr, r.error.c_str());
    std::fflush(stdout);
    if (json)
      json << "{\"case\":\"" << p.c.label() << "\",\"pass\":" << (r.ok ? "true" : "false")
           << ",\"rel_err\":" << (std::isfinite(r.relErr) ? r.relErr : 1e30)
           << ",\"lse_abs_err\":" << (std::isfinite(r.lseErr) ? r.lseErr : 1e30) << "}\n";
    EXPECT_TRUE(r.ok) << p.c.label() << ": " << r.error;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
}

// Indices that name blocks out of range make nsajit_check_indices fail with a
// message naming the position, and the kernel itself still runs safely.
TEST_F(GpuForward, CheckIndicesReportsOutOfRange) {
  Case c{Br::Slc, false, 128, 128, 16, 1, 1, 100};
  c.lsel = 32, c.n = 2, c.seed = 99;
  Prepared p = prepare(c);
  std::vector<std::int32_t> idx(std::size_t(c.t) * c.n, 0);
  idx[2 * 50 + 1] = 3; // block 3 starts at 96 > t = 50
  Buffer ib(*dev, idx.size() * 4);
  ib.upload(idx);
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  cfg.num_kv_heads = 1, cfg.group = 16, cfg.slc_block = 32, cfg.slc_count = 2;
  nsajit_tensor ti = {ib.ptr, std::int64_t(c.t) * c.n, c.n, c.n};
  EXPECT_EQ(nsajit_check_indices(ctx, &cfg, 1, c.t, &ti, nullptr), NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(nsajit_last_error()).find("50"), std::string::npos) << nsajit_last_error();
  idx[2 * 50 + 1] = 1;
  ib.upload(idx);
  EXPECT_EQ(nsajit_check_indices(ctx, &cfg, 1, c.t, &ti, nullptr), NSAJIT_OK) << nsajit_last_error();
}

// Misaligned device pointers are refused before any launch.
TEST_F(GpuForward, MisalignedPointerIsRejected) {
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  Buffer buf(*dev, 1 << 20);
  nsajit_tensor t = {buf.ptr + 2, 4 * 16 * 128, 16 * 128, 128};
  nsajit_tensor kv = {buf.ptr, 4 * 128, 128, 128};
  nsajit_tensor lse = {buf.ptr, 4 * 16, 16, 1};
  cfg.num_kv_heads = 1;
  EXPECT_EQ(nsajit_window_forward(ctx, &cfg, 1, 4, &t, &kv, &kv, &t, &lse, nullptr),
            NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(nsajit_last_error()).find("q"), std::string::npos) << nsajit_last_error();
}

} // namespace
