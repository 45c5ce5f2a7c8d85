// Unit tests of the compiler: KernelSpec validation and identity, the spec <->
// nsa IR bridge, and compileKernel's PTX for every branch (no GPU needed).
#include <algorithm>
#include "nsajit/compiler/Compiler.h"
#include "nsajit/compiler/KernelSpec.h"
#include "nsajit/compiler/Pipeline.h"
#include "nsajit/compiler/SpecIR.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"

#include "nsa/NsaOps.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>

using namespace nsajit;

namespace {

KernelSpec spec(Branch b, int dk = 128, int dv = 128, int g = 16) {
  KernelSpec s;
  s.branch = b, s.headDimQK = dk, s.headDimV = dv, s.group = g;
  return s;
}

TEST(KernelSpec, ValidateNamesFieldAndAllowedValues) {
  KernelSpec s = spec(Branch::Selected);
  EXPECT_EQ(validate(s), "");
  s.headDimQK = 96;
  EXPECT_NE(validate(s).find("head_dim_qk (Dk) = 96"), std::string::npos) << validate(s);
  EXPECT_NE(validate(s).find("64, 128, 192, 256"), std::string::npos);
  s = spec(Branch::Selected, 128, 256);
  EXPECT_NE(validate(s).find("must not exceed"), std::string::npos) << validate(s);
  s = spec(Branch::Selected, 128, 128, 3);
  EXPECT_NE(validate(s).find("group (G) = 3"), std::string::npos) << validate(s);
  s = spec(Branch::Selected);
  s.slcBlock = 48;
  EXPECT_NE(validate(s).find("l' = 48"), std::string::npos) << validate(s);
  s = spec(Branch::Compressed);
  s.cmpBlock = 32, s.cmpStride = 12;
  EXPECT_NE(validate(s).find("must divide"), std::string::npos) << validate(s);
  s = spec(Branch::Window);
  s.window = 0;
  EXPECT_NE(validate(s).find("window w = 0"), std::string::npos) << validate(s);
  s = spec(Branch::Selected, 128, 128, 1);
  s.tile = {1, 2, 64}; // the union schedule: legal for the forward kernel
  EXPECT_EQ(validate(s), "");
  s.tile = {2, 17, 64};
  EXPECT_NE(validate(s).find("union schedule takes 1..16 tokens"), std::string::npos) << validate(s);
  s.tile = {1, 2, 64};
  s.pass = KernelPass::BackwardDQ; // the dQ kernel takes the same union schedule
  EXPECT_EQ(validate(s), "");
  s.tile = {2, 17, 64};
  EXPECT_NE(validate(s).find("dQ kernel's union schedule takes 1..16 tokens"), std::string::npos) << validate(s);
  s = spec(Branch::Window, 128, 128, 32);
  s.tile = {1, 1, 64};
  EXPECT_NE(validate(s).find("tokens x G"), std::string::npos) << validate(s);
}

TEST(KernelSpec, DefaultTilesCoverTheGroup) {
  for (Branch b : {Branch::Compressed, Branch::Selected, Branch::Window})
    for (int g : {1, 2, 4, 8, 16, 32})
      for (int dk : {64, 128, 192, 256}) {
        KernelSpec s = withDefaultTiles(spec(b, dk, 64, g));
        ASSERT_EQ(validate(s), "") << s.str();
        EXPECT_GE(s.tile.warps * 16, s.tile.tokensPerCta * g) << s.str();
        EXPECT_LE(sharedMemoryBytes(s), 227 * 1024) << s.str();
        if (b == Branch::Selected) { // the union schedule over about 32 rows, at least 2 tokens
          EXPECT_EQ(s.tile.tokensPerCta, std::clamp(32 / g, 2, kMaxUnionTokens)) << s.str();
          EXPECT_EQ(s.tile.kvChunk, dk > 128 ? 32 : 64) << s.str();
          KernelSpec perToken = spec(b, dk, 64, g); // one token a CTA keeps 32-key chunks
          perToken.tile.tokensPerCta = 1;
          EXPECT_EQ(withDefaultTiles(perToken).tile.kvChunk, 32) << perToken.str();
          EXPECT_EQ(s.tile.warps, (s.tile.tokensPerCta * g + 15) / 16) << s.str();
        }
        if (b == Branch::Selected) { // its dQ kernel: the union over about 32 rows; per token: its own chunks
          KernelSpec dq = spec(b, dk, 64, g);
          dq.pass = KernelPass::BackwardDQ;
          EXPECT_EQ(withDefaultTiles(dq).tile.tokensPerCta, std::clamp(32 / g, 2, kMaxUnionTokens)) << s.str();
          EXPECT_LE(sharedMemoryBytes(withDefaultTiles(dq)), 227 * 1024) << s.str();
          dq.tile.tokensPerCta = 1;
          EXPECT_EQ(withDefaultTiles(dq).tile.warps, std::max(1, g / 16)) << s.str();
          EXPECT_EQ(withDefaultTiles(dq).tile.kvChunk, dk > 128 ? 32 : 64) << s.str();
        }
      }
}

KernelSpec topNSpec(int g, int dk = 128, int n = 16) {
  KernelSpec s = spec(Branch::Compressed, dk, dk, g);
  s.pass = KernelPass::TopN;
  s.slcCount = n;
  return s;
}

TEST(KernelSpec, TopNDefaultTileHoldsSeveralTokens) {
  EXPECT_EQ(defaultTileConfig(topNSpec(16)), (TileConfig{8, 8, 64}));
  EXPECT_EQ(defaultTileConfig(topNSpec(32)), (TileConfig{8, 4, 64}));
  EXPECT_EQ(defaultTileConfig(topNSpec(4)), (TileConfig{4, 16, 64}));
  EXPECT_EQ(defaultTileConfig(topNSpec(1)), (TileConfig{2, 32, 64})); // 64 tokens' windows do not fit
  EXPECT_EQ(defaultTileConfig(topNSpec(16, 256)), (TileConfig{4, 4, 64}));
  // sm_90a scores 64-key chunks (one wgmma M); the paper's Dk = 192 keeps 8 tokens
  // by shorter windows (64 blocks of l' = 64 at d = 16) instead of fewer tokens.
  KernelSpec paper = topNSpec(16, 192);
  paper.cmpBlock = 32, paper.cmpStride = 16, paper.slcBlock = 64;
  EXPECT_EQ(defaultTileConfig(paper), (TileConfig{8, 8, 64}));
  EXPECT_TRUE(topNUsesWarpgroupMma(withDefaultTiles(paper)));
  EXPECT_EQ(topNWindow(paper).blocks, 64);
  EXPECT_LE(sharedMemoryBytes(withDefaultTiles(paper)), 110 * 1024);
  paper.arch = Arch::SM80;
  EXPECT_EQ(defaultTileConfig(paper), (TileConfig{8, 8, 32}));
  EXPECT_EQ(topNWindow(paper).blocks, 128);
  // A 32-key chunk on sm_90a scores by mma.sync.
  paper.arch = Arch::SM90a;
  paper.tile = {8, 8, 32};
  EXPECT_FALSE(topNUsesWarpgroupMma(paper));
  for (int g : {1, 2, 4, 8, 16, 32})
    for (int dk : {64, 128, 192, 256})
      for (int n : {1, 16, 1024})
        for (auto [l, d, lsel] : {std::tuple{32, 16, 64}, std::tuple{64, 64, 64}, std::tuple{4096, 16, 16}}) {
          KernelSpec s = topNSpec(g, dk, n);
          s.cmpBlock = l, s.cmpStride = d, s.slcBlock = lsel, s.slcInitial = 0, s.slcLocal = 0;
          ASSERT_EQ(validate(s), "") << s.str();
          s = withDefaultTiles(s);
          ASSERT_EQ(validate(s), "") << s.str();
          EXPECT_GE(s.tile.warps * 16, s.tile.tokensPerCta * g) << s.str();
          EXPECT_LE(s.tile.warps * 16, std::max(16, s.tile.tokensPerCta * g) + 15) << "idle warps: " << s.str();
          // Fewer tokens only where the windows would not fit the budget (wgmma tiles: two key chunks).
          const int budget = (topNUsesWarpgroupMma(s) ? 110 : 96) * 1024;
          EXPECT_TRUE(sharedMemoryBytes(s) <= budget || s.tile.tokensPerCta == 1) << s.str();
          EXPECT_LE(sharedMemoryBytes(s), 227 * 1024) << s.str();
        }
}

TEST(KernelSpec, TopNTileRules) {
  KernelSpec s = topNSpec(16);
  s.tile = {2, 3, 64}; // 48 rows in 32
  EXPECT_NE(validate(s).find("tokens x G = 48"), std::string::npos) << validate(s);
  s.tile = {3, 3, 64};
  EXPECT_EQ(validate(s), "");
  s.tile = {1, 1, 48};
  EXPECT_NE(validate(s).find("kv_chunk = 48"), std::string::npos) << validate(s);
  s = topNSpec(1, 256, 1024);
  s.tile = {8, 128, 128}; // 128 tokens x (1024-entry lists and long windows)
  EXPECT_NE(validate(s).find("needs"), std::string::npos) << validate(s);
  EXPECT_NE(validate(s).find("shared memory"), std::string::npos) << validate(s);
  // A partial tile gets the rest from the defaults, and the rows still fit.
  s = topNSpec(8);
  s.tile = {2, 0, 0};
  EXPECT_EQ(withDefaultTiles(s).tile, (TileConfig{2, 4, 64}));
  s.tile = {0, 3, 0};
  EXPECT_EQ(withDefaultTiles(s).tile, (TileConfig{2, 3, 64}));
  // The grid walks tokens in steps of the tile's tokens.
  EXPECT_EQ(threadsPerCta(topNSpec(16)), 256);
}

TEST(KernelSpec, IdentityIgnoresOtherBranchesFields) {
  KernelSpec a = spec(Branch::Window), b = spec(Branch::Window);
  b.slcBlock = 16, b.cmpBlock = 64; // not used by the window branch
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.hash(), b.hash());
  b.window = 256;
  EXPECT_NE(a.str(), b.str());
  EXPECT_NE(a.hash(), b.hash());
  KernelSpec c = a;
  c.dtype = DType::FP16;
  EXPECT_NE(a.hash(), c.hash());
}

class SpecIRTest : public ::testing::Test {
protected:
  SpecIRTest() {
    mlir::DialectRegistry registry;
    registerCompilerDialects(registry);
    ctx.appendDialectRegistry(registry);
    ctx.loadAllAvailableDialects();
  }
  mlir::MLIRContext ctx;
};

TEST_F(SpecIRTest, RoundTripThroughTheNsaOp) {
  for (Branch b : {Branch::Compressed, Branch::Selected, Branch::Window}) {
    KernelSpec s = spec(b, 192, 128, 4);
    s.dtype = DType::FP16, s.cmpBlock = 64, s.cmpStride = 32, s.slcBlock = 32, s.slcCount = 7, s.window = 100;
    s.scale = 0.25f;
    s.tile = defaultTileConfig(s);
    auto module = buildSpecModule(&ctx, s);
    ASSERT_TRUE(mlir::succeeded(mlir::verify(*module)));
    mlir::Operation *op = nullptr;
    module->walk([&](mlir::nsa::AttentionOpInterface o) { op = o; });
    ASSERT_NE(op, nullptr);
    KernelSpec back;
    std::string error;
    ASSERT_TRUE(specFromOp(op, s.arch, back, error)) << error;
    EXPECT_EQ(back, s) << back.str() << " vs " << s.str();
  }
}

TEST(Compiler, EveryBranchProducesTensorCorePtx) {
  // No libdevice: with no CUDA toolkit to link from, nothing external may remain.
  setenv("CUDA_HOME", "/nonexistent-cuda", 1);
  for (Arch arch : {Arch::SM80, Arch::SM90a})
    for (Branch b : {Branch::Compressed, Branch::Selected, Branch::Window}) {
      KernelSpec s = spec(b);
      s.arch = arch;
      CompileResult r;
      std::string err = compileKernel(s, r);
      ASSERT_EQ(err, "") << s.str();
      EXPECT_EQ(r.kernelName, s.kernelName());
      EXPECT_NE(r.ptx.find(".entry " + s.kernelName()), std::string::npos);
      EXPECT_NE(r.ptx.find(std::string(".target ") + archName(arch)), std::string::npos);
      // sm_90a, dense branches: the default forward tiles are two warpgroups (8 warps,
      // 64 keys a chunk, warp-specialised), so wgmma with K (K-major) and V
      // (transposed) from shared memory; the selected branch and sm_80: mma.sync.
      if (arch == Arch::SM90a && b != Branch::Selected) {
        EXPECT_NE(r.ptx.find("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16"), std::string::npos) << s.str();
        EXPECT_NE(r.ptx.find(", p, 1, 1, 1;"), std::string::npos) << "V is not transposed: " << s.str();
        EXPECT_NE(r.ptx.find("wgmma.fence.sync.aligned"), std::string::npos);
        EXPECT_NE(r.ptx.find("wgmma.wait_group.sync.aligned 0"), std::string::npos);
        EXPECT_NE(r.ptx.find("fence.proxy.async.shared::cta"), std::string::npos);
        EXPECT_EQ(r.ptx.find("mma.sync.aligned"), std::string::npos) << s.str();
      } else {
        EXPECT_NE(r.ptx.find("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"), std::string::npos);
        EXPECT_EQ(r.ptx.find("wgmma"), std::string::npos) << s.str();
      }
      EXPECT_NE(r.ptx.find("ex2.approx"), std::string::npos);
      EXPECT_NE(r.ptx.find("shfl.sync.bfly"), std::string::npos);
      EXPECT_EQ(r.ptx.find("__nv_"), std::string::npos);
      EXPECT_EQ(r.ptx.find(".extern .func"), std::string::npos);
      // The launch bounds match the block the runtime launches.
      EXPECT_NE(r.ptx.find(".maxntid " + std::to_string(threadsPerCta(s)) + ", 1, 1"), std::string::npos);
    }
}

TEST(Compiler, Fp16UsesHalfMma) {
  KernelSpec s = spec(Branch::Window);
  s.dtype = DType::FP16;
  s.arch = Arch::SM80;
  CompileResult r;
  ASSERT_EQ(compileKernel(s, r), "");
  EXPECT_NE(r.ptx.find("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"), std::string::npos);
  s.arch = Arch::SM90a;
  ASSERT_EQ(compileKernel(s, r), "");
  EXPECT_NE(r.ptx.find("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16"), std::string::npos);
}

// On sm_90a a dense forward tile takes wgmma only when it is made of whole
// warpgroups: 2 warps stay on mma.sync; 4 warps are one warpgroup, 8 two
// (the default), each issuing its own wgmma (N = the kv chunk for S, Dv for
// O). The selected branch stays on mma.sync (a warp skips other tokens' blocks).
TEST(Compiler, WarpgroupMmaNeedsWholeWarpgroups) {
  KernelSpec s = spec(Branch::Window);
  EXPECT_EQ(defaultTileConfig(s), (TileConfig{8, 8, 64}));
  s.arch = Arch::SM80;
  EXPECT_EQ(defaultTileConfig(s), (TileConfig{4, 4, 32}));
  s.arch = Arch::SM90a;
  s.tile.warps = 2;
  CompileResult r;
  ASSERT_EQ(compileKernel(s, r), "");
  EXPECT_EQ(r.ptx.find("wgmma"), std::string::npos);
  EXPECT_NE(r.ptx.find("mma.sync.aligned.m16n8k16"), std::string::npos);
  s.tile.warps = 4;
  s.tile.kvChunk = 64;
  ASSERT_EQ(compileKernel(s, r), "");
  EXPECT_NE(r.ptx.find(".maxntid 128, 1, 1"), std::string::npos);
  EXPECT_NE(r.ptx.find("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16"), std::string::npos);
  // Two warpgroups whose ring of 128-key chunks does not fit beside two Q
  // tiles: one CTA of 8 warps that copy and compute.
  s.tile = {8, 8, 128};
  ASSERT_FALSE(forwardWarpSpecialised(s));
  ASSERT_EQ(compileKernel(s, r), "");
  EXPECT_NE(r.ptx.find(".maxntid 256, 1, 1"), std::string::npos);
  EXPECT_NE(r.ptx.find("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16"), std::string::npos);
  EXPECT_EQ(r.ptx.find("mbarrier"), std::string::npos);
  // The default: warp-specialised (see WarpSpecialisedForward).
  s.tile = {};
  ASSERT_EQ(compileKernel(s, r), "");
  EXPECT_NE(r.ptx.find(".maxntid 384, 1, 1"), std::string::npos);
  EXPECT_NE(r.ptx.find("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16"), std::string::npos);
  EXPECT_NE(r.ptx.find("wgmma.mma_async.sync.aligned.m64n" + std::to_string(s.headDimV) + "k16.f32.bf16.bf16"),
            std::string::npos);
  EXPECT_EQ(r.ptx.find("mma.sync.aligned"), std::string::npos);
  KernelSpec selected = spec(Branch::Selected);
  ASSERT_EQ(defaultTileConfig(selected).warps, 2); // 2 tokens of G = 16: no whole warpgroup
  ASSERT_EQ(compileKernel(selected, r), "");
  EXPECT_EQ(r.ptx.find("wgmma"), std::string::npos);
}

// The sm_90a dense forward by default: a producer warpgroup stages Q tiles and
// K/V chunks (cp.async, arriving on mbarriers as they land) for two consumer
// warpgroups, which take registers from it (setmaxnreg) and overlap a chunk's
// softmax with the P V of the chunk before (two wgmma groups in flight).
TEST(Compiler, WarpSpecialisedForward) {
  for (Branch b : {Branch::Compressed, Branch::Window})
    for (int dk : {128, 192}) {
      KernelSpec s = spec(b, dk, 128, 16);
      ASSERT_TRUE(forwardWarpSpecialised(s)) << s.str();
      EXPECT_EQ(threadsPerCta(s), 384);
      EXPECT_EQ(forwardProducerThreads(s), 128);
      EXPECT_EQ(forwardStages(s), 3);
      EXPECT_EQ(forwardTilesPerCta(s), 8);
      EXPECT_EQ(forwardMinCtasPerSm(s), 0);
      // Two Q tiles, three chunks of 64 keys, 10 mbarriers.
      EXPECT_EQ(sharedMemoryBytes(s), 2 * 128 * dk * 2 + 3 * 64 * (dk + 128) * 2 + 80);
      CompileResult r;
      ASSERT_EQ(compileKernel(s, r), "") << s.str();
      for (const char *needle :
           {"setmaxnreg.dec.sync.aligned.u32 40", "setmaxnreg.inc.sync.aligned.u32 232", "mbarrier.init.shared::cta.b64",
            "cp.async.mbarrier.arrive.noinc.shared::cta.b64", "mbarrier.try_wait.parity.shared::cta.b64",
            "mbarrier.arrive.shared::cta.b64", "wgmma.wait_group.sync.aligned 1", "fence.proxy.async.shared::cta"})
        EXPECT_NE(r.ptx.find(needle), std::string::npos) << needle << " in " << s.str();
      EXPECT_EQ(r.ptx.find("bar.sync"), r.ptx.rfind("bar.sync")) << "one CTA barrier, after the mbarriers' set-up";
    }
  // The selected branch's default tile (see WarpSpecialisedSelectedUnion) and sm_80 are not specialised.
  EXPECT_FALSE(forwardWarpSpecialised(spec(Branch::Selected)));
  KernelSpec sm80 = spec(Branch::Window);
  sm80.arch = Arch::SM80;
  EXPECT_FALSE(forwardWarpSpecialised(sm80));
  EXPECT_EQ(forwardTilesPerCta(sm80), 1);
}

// The first kernel of the selected dQ kernels' two-kernel schedule: one
// warpgroup of 64 rows with wgmma, the dQ default's chunk, a block skipped
// after a vote at the warpgroup's own named barrier (barrier.red with an
// immediate id: a register id makes ptxas reserve all 16 barriers).
TEST(Compiler, SelectedDqUnionTile) {
  for (int g : {4, 8, 16, 32})
    for (auto [dk, dv] : {std::pair{64, 64}, std::pair{128, 128}, std::pair{192, 128}}) {
      KernelSpec s = spec(Branch::Selected, dk, dv, g);
      s.pass = KernelPass::BackwardDQ;
      TileConfig t = selectedDqUnionTile(s);
      ASSERT_EQ(t.warps, 4) << s.str();
      EXPECT_EQ(t.tokensPerCta, 64 / g);
      EXPECT_EQ(t.kvChunk, dk > 128 ? 32 : 64);
      EXPECT_EQ(selectedFirstTile(s), t);
      s.tile = t;
      EXPECT_TRUE(selectedDqWarpgroupTile(s));
      EXPECT_TRUE(backwardUsesWarpgroupMma(s));
      // Q, dO, two K/V buffers, the union and its bitmap.
      EXPECT_EQ(sharedMemoryBytes(s), 64 * (dk + dv) * 2 + 2 * t.kvChunk * (dk + dv) * 2 +
                                          selectedUnionSharedBytes(64 / g, s.slcCount) + kUnionBitmapBytes);
      if (g != 16)
        continue; // one compile per head dims
      CompileResult r;
      ASSERT_EQ(compileKernel(s, r), "") << s.str();
      for (const char *needle : {"wgmma.mma_async", "barrier.red.or.pred q, 1, 128, p;", "atom.shared.or.b32"})
        EXPECT_NE(r.ptx.find(needle), std::string::npos) << needle << " in " << s.str();
      EXPECT_EQ(r.ptx.find("bar.red"), std::string::npos) << "the vote's barrier is not aligned";
      EXPECT_EQ(r.ptx.find("mma.sync.aligned"), std::string::npos);
    }
  // The default dQ tile (2 tokens of G = 16: half a warpgroup) stays on mma.sync.
  KernelSpec dq = spec(Branch::Selected);
  dq.pass = KernelPass::BackwardDQ;
  EXPECT_FALSE(backwardUsesWarpgroupMma(withDefaultTiles(dq)));
  // Where the schedule does not apply: G = 1, 2 (64 / G > 16 tokens), 64 (one
  // token), Dk + Dv > 320, sm_80, the forward (its own first tile), other branches.
  for (int g : {1, 2, 64}) {
    KernelSpec s = spec(Branch::Selected, 128, 128, g);
    s.pass = KernelPass::BackwardDQ;
    EXPECT_EQ(selectedDqUnionTile(s).warps, 0) << g;
  }
  KernelSpec wide = spec(Branch::Selected, 256, 256);
  wide.pass = KernelPass::BackwardDQ;
  EXPECT_EQ(selectedDqUnionTile(wide).warps, 0);
  KernelSpec sm80 = dq;
  sm80.arch = Arch::SM80;
  EXPECT_EQ(selectedDqUnionTile(sm80).warps, 0);
  EXPECT_EQ(selectedDqUnionTile(spec(Branch::Selected)).warps, 0);
  EXPECT_EQ(selectedFirstTile(spec(Branch::Selected)), selectedSpecialisedTile(spec(Branch::Selected)));
  KernelSpec window = spec(Branch::Window);
  window.pass = KernelPass::BackwardDQ;
  EXPECT_EQ(selectedDqUnionTile(window).warps, 0);
}

// The selected forward's warp-specialised union tiles (8 warps, tokens x G =
// 128): the producer warpgroup builds each tile's union at its own named
// barrier (not bar.sync, which LLVM may duplicate into divergent paths) and
// hands it over with the tile's Q; the kernel of the two-kernel schedule.
TEST(Compiler, WarpSpecialisedSelectedUnion) {
  for (int g : {16, 32})
    for (int dk : {128, 192}) {
      KernelSpec s = spec(Branch::Selected, dk, 128, g);
      TileConfig t = selectedSpecialisedTile(s);
      ASSERT_EQ(t.warps, 8) << s.str();
      EXPECT_EQ(t.tokensPerCta, 128 / g);
      EXPECT_EQ(t.kvChunk, 64);
      s.tile = t;
      ASSERT_TRUE(forwardWarpSpecialised(s)) << s.str();
      EXPECT_TRUE(forwardUsesWarpgroupMma(s));
      EXPECT_EQ(threadsPerCta(s), 384);
      EXPECT_EQ(forwardTilesPerCta(s), 8);
      // Two Q tiles, three chunks, 10 mbarriers, two unions, the bitmap.
      EXPECT_EQ(sharedMemoryBytes(s), 2 * 128 * dk * 2 + 3 * 64 * (dk + 128) * 2 + 80 +
                                          2 * selectedUnionSharedBytes(128 / g, s.slcCount) + kUnionBitmapBytes);
      CompileResult r;
      ASSERT_EQ(compileKernel(s, r), "") << s.str();
      for (const char *needle : {"setmaxnreg.dec.sync.aligned.u32 40", "barrier.sync 1, 128;",
                                 "cp.async.mbarrier.arrive.noinc.shared::cta.b64", "mbarrier.arrive.shared::cta.b64",
                                 "wgmma.wait_group.sync.aligned 1", "atom.shared.add.u32"})
        EXPECT_NE(r.ptx.find(needle), std::string::npos) << needle << " in " << s.str();
      EXPECT_EQ(r.ptx.find("bar.sync 1"), std::string::npos) << "the named barrier is not aligned";
      EXPECT_EQ(r.ptx.find("mma.sync.aligned"), std::string::npos);
    }
  // Where it does not apply: G not dividing 128 into 2..16 tokens, blocks not
  // a multiple of the 64-key chunk, shared memory, sm_80, other branches.
  EXPECT_EQ(selectedSpecialisedTile(spec(Branch::Selected, 128, 128, 12)).warps, 0);
  EXPECT_EQ(selectedSpecialisedTile(spec(Branch::Selected, 128, 128, 4)).warps, 0);   // 32 tokens
  EXPECT_EQ(selectedSpecialisedTile(spec(Branch::Selected, 128, 128, 128)).warps, 0); // 1 token
  KernelSpec small = spec(Branch::Selected);
  small.slcBlock = 32;
  EXPECT_EQ(selectedSpecialisedTile(small).warps, 0);
  EXPECT_EQ(selectedSpecialisedTile(spec(Branch::Selected, 256, 256, 16)).warps, 0);
  KernelSpec sm80 = spec(Branch::Selected);
  sm80.arch = Arch::SM80;
  EXPECT_EQ(selectedSpecialisedTile(sm80).warps, 0);
  EXPECT_EQ(selectedSpecialisedTile(spec(Branch::Window)).warps, 0);
  EXPECT_EQ(selectedUnionLimit(spec(Branch::Selected)), 5 * spec(Branch::Selected).slcCount / 2);
}

TEST(Compiler, SpecializesPerConfiguration) {
  // Head dims are unrolled into the kernel: more mma for a larger Dk.
  auto countMma = [](const KernelSpec &s) {
    CompileResult r;
    EXPECT_EQ(compileKernel(s, r), "");
    std::regex re("mma\\.sync");
    return std::distance(std::sregex_iterator(r.ptx.begin(), r.ptx.end(), re), std::sregex_iterator());
  };
  KernelSpec a = spec(Branch::Selected, 64, 64, 16), b = spec(Branch::Selected, 256, 256, 16);
  EXPECT_LT(countMma(a), countMma(b));
}

TEST(Compiler, InvalidSpecIsRejectedWithItsMessage) {
  KernelSpec s = spec(Branch::Selected);
  s.slcBlock = 48;
  CompileResult r;
  std::string err = compileKernel(s, r);
  EXPECT_NE(err.find("l' = 48"), std::string::npos) << err;
  EXPECT_TRUE(r.ptx.empty());
}

TEST(Compiler, VersionNamesMlir) {
  EXPECT_NE(compilerVersion().find("mlir 22"), std::string::npos) << compilerVersion();
}

} // namespace

namespace {

TEST(Compiler, BackwardAndTopNKernelsAreGenerated) {
  setenv("CUDA_HOME", "/nonexistent-cuda", 1);
  for (Branch b : {Branch::Compressed, Branch::Selected, Branch::Window})
    for (KernelPass pass : {KernelPass::BackwardPreprocess, KernelPass::BackwardDQ, KernelPass::BackwardDKDV}) {
      for (Arch arch : {Arch::SM90a, Arch::SM80}) {
        KernelSpec s = spec(b, 128, 64, 4);
        s.pass = pass, s.arch = arch;
        CompileResult r;
        ASSERT_EQ(compileKernel(s, r), "") << s.str();
        EXPECT_NE(r.ptx.find(".entry " + s.kernelName()), std::string::npos) << s.kernelName();
        EXPECT_EQ(r.ptx.find("__nv_"), std::string::npos);
        if (pass == KernelPass::BackwardPreprocess)
          continue;
        // sm_90a: wgmma for the 4-warp tiles (dK/dV, dense dQ); the selected dQ kernel's one-warp CTAs stay mma.sync.
        const bool warpgroup = arch == Arch::SM90a && (pass == KernelPass::BackwardDKDV || b != Branch::Selected);
        EXPECT_EQ(r.ptx.find("wgmma.mma_async") != std::string::npos, warpgroup) << s.str();
        EXPECT_EQ(r.ptx.find("mma.sync.aligned.m16n8k16") != std::string::npos, !warpgroup) << s.str();
      }
    }
  // dK/dV accumulators wider than Dk + Dv = 320 columns stay on mma.sync.
  KernelSpec wide = spec(Branch::Window, 256, 256, 16);
  wide.pass = KernelPass::BackwardDKDV;
  CompileResult rw;
  ASSERT_EQ(compileKernel(wide, rw), "") << wide.str();
  EXPECT_EQ(rw.ptx.find("wgmma"), std::string::npos);
  KernelSpec s = spec(Branch::Compressed);
  s.pass = KernelPass::TopN;
  CompileResult r;
  // sm_90a: the 8-warp default tile scores with wgmma; sm_80 with mma.sync.
  for (Arch arch : {Arch::SM90a, Arch::SM80}) {
    s.arch = arch;
    ASSERT_EQ(compileKernel(s, r), "");
    EXPECT_NE(r.ptx.find(".entry nsa_compressed_topn"), std::string::npos);
    EXPECT_EQ(r.ptx.find("wgmma.mma_async") != std::string::npos, arch == Arch::SM90a);
    EXPECT_EQ(r.ptx.find("mma.sync.aligned.m16n8k16") != std::string::npos, arch == Arch::SM80);
    EXPECT_NE(r.ptx.find("bar.warp.sync"), std::string::npos);
  }
  s.arch = Arch::SM90a;
  // Other tiles: one token per CTA, a token count that leaves idle rows, G = 32
  // over two warps, G = 1 with many tokens.
  for (auto [g, tile] : {std::pair{16, TileConfig{1, 1, 64}}, std::pair{4, TileConfig{4, 3, 32}},
                         std::pair{32, TileConfig{4, 2, 16}}, std::pair{1, TileConfig{2, 32, 128}}}) {
    KernelSpec t = topNSpec(g, 64);
    t.tile = tile;
    CompileResult rt;
    ASSERT_EQ(compileKernel(t, rt), "") << t.str();
    EXPECT_NE(rt.ptx.find(".entry nsa_compressed_topn"), std::string::npos) << t.str();
    EXPECT_NE(rt.ptx.find(".maxntid " + std::to_string(tile.warps * 32) + ", 1, 1"), std::string::npos) << t.str();
  }
  s.branch = Branch::Window;
  EXPECT_NE(validate(s).find("belongs to the compressed branch"), std::string::npos) << validate(s);
  s.branch = Branch::Compressed;
  s.slcInitial = 10, s.slcLocal = 10;
  EXPECT_NE(validate(s).find("forced blocks"), std::string::npos) << validate(s);
}

} // namespace
