// The header-only C++ layer (nsajit.hpp) over the C API, against the fake
// driver. Also compiled together with the compiler's headers to show the two
// nsajit namespaces do not clash.
#include "nsajit/nsajit.hpp"

#include "nsajit/compiler/Compiler.h"
#include "nsajit/compiler/KernelAbi.h"
#include "nsajit/compiler/KernelSpec.h"

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <memory>
#include <type_traits>

using namespace nsajit::rt::test;

namespace {

class CppApi : public ::testing::Test {
protected:
  TempDir cacheDir;
  RecordingCompiler compiler;
  void SetUp() override {
    FakeDriver::get().fakecuda_reset();
    nsajit::rt::CudaDriver::resetForTesting(NSAJIT_FAKE_CUDA_PATH);
    nsajit::rt::DiskCache::setGlobalForTesting(std::make_shared<nsajit::rt::DiskCache>(cacheDir.path()));
    nsajit::rt::PtxCache::global().resetForTesting(compiler.fn());
  }
  void TearDown() override {
    nsajit::rt::PtxCache::global().resetForTesting(nullptr);
    nsajit::rt::DiskCache::setGlobalForTesting(std::make_shared<nsajit::rt::DiskCache>("", "unit tests"));
    nsajit::rt::CudaDriver::resetForTesting("");
  }
};

} // namespace

static_assert(!std::is_copy_constructible_v<nsajit::Context>);
static_assert(std::is_nothrow_move_constructible_v<nsajit::Context>);

TEST_F(CppApi, ConfigDefaultsAndSetters) {
  nsajit::Config cfg;
  EXPECT_EQ(cfg.struct_size, sizeof(nsajit_config));
  EXPECT_EQ(cfg.group, 16);
  cfg.withHeads(2, 4).withHeadDims(192, 128).withSelection(32, 8).withWindow(256).withCompression(64, 64)
      .withDtype(NSAJIT_DTYPE_FP16).withScale(0.5f).withTile(4, 0, 32);
  EXPECT_EQ(cfg.num_kv_heads, 2);
  EXPECT_EQ(cfg.group, 4);
  EXPECT_EQ(cfg.head_dim_qk, 192);
  EXPECT_EQ(cfg.head_dim_v, 128);
  EXPECT_EQ(cfg.slc_block, 32);
  EXPECT_EQ(cfg.slc_count, 8);
  EXPECT_EQ(cfg.window, 256);
  EXPECT_EQ(cfg.cmp_block, 64);
  EXPECT_EQ(cfg.cmp_stride, 64);
  EXPECT_EQ(cfg.dtype, NSAJIT_DTYPE_FP16);
  EXPECT_EQ(cfg.scale, 0.5f);
  EXPECT_EQ(cfg.tile_warps, 4);
  EXPECT_EQ(cfg.tile_kv_chunk, 32);
  EXPECT_EQ(cfg.get(), static_cast<const nsajit_config *>(&cfg));
}

TEST_F(CppApi, TensorHelpers) {
  auto q = nsajit::Tensor::contiguous(0x1000, 100, 64, 128);
  EXPECT_EQ(q.data, 0x1000u);
  EXPECT_EQ(q.stride_head, 128);
  EXPECT_EQ(q.stride_token, 64 * 128);
  EXPECT_EQ(q.stride_batch, 100 * 64 * 128);
  auto lse = nsajit::Tensor::contiguous(0x2000, 100, 64);
  EXPECT_EQ(lse.stride_head, 1);
  EXPECT_EQ(lse.stride_token, 64);
  EXPECT_EQ(lse.stride_batch, 6400);
}

TEST_F(CppApi, ContextLaunchesAndThrowsNsajitError) {
  nsajit::Context ctx(0);
  EXPECT_NE(ctx.get(), nullptr);
  EXPECT_NE(ctx.deviceInfo().find("Fake H100"), std::string::npos);
  nsajit::Config cfg;
  cfg.withHeads(1, 16);
  const int T = 64;
  FakeBuffer q(T * 16 * 128 * 2), k(T * 128 * 2), v(T * 128 * 2), idx(T * 16 * 4), o(T * 16 * 128 * 2),
      lse(T * 16 * 4);
  auto tq = nsajit::Tensor::contiguous(q.ptr(), T, 16, 128), tk = nsajit::Tensor::contiguous(k.ptr(), T, 1, 128),
       tv = nsajit::Tensor::contiguous(v.ptr(), T, 1, 128), ti = nsajit::Tensor::contiguous(idx.ptr(), T, 1, 16),
       to = nsajit::Tensor::contiguous(o.ptr(), T, 16, 128), tl = nsajit::Tensor::contiguous(lse.ptr(), T, 16);
  EXPECT_NO_THROW(ctx.selectedForward(cfg, 1, T, tq, tk, tv, ti, to, tl));
  EXPECT_EQ(FakeDriver::get().lastLaunch().count, 1);
  EXPECT_EQ(ctx.cacheStats().compiles, 1u);

  auto bad = tq;
  bad.stride_head = 4;
  try {
    ctx.selectedForward(cfg, 1, T, bad, tk, tv, ti, to, tl);
    FAIL() << "expected nsajit::Error";
  } catch (const nsajit::Error &e) {
    EXPECT_EQ(e.status(), NSAJIT_ERROR_INVALID_ARGUMENT);
    EXPECT_STREQ(e.statusName(), "NSAJIT_ERROR_INVALID_ARGUMENT");
    EXPECT_NE(std::string(e.what()).find("q.stride_head = 4"), std::string::npos) << e.what();
  }

  std::string_view ptx = ctx.compile(cfg, NSAJIT_BRANCH_WINDOW);
  EXPECT_NE(ptx.find(".entry nsa_window_fwd("), std::string_view::npos);
  nsajit::KernelInfo info = ctx.kernelInfo(cfg, NSAJIT_BRANCH_WINDOW);
  EXPECT_EQ(info.kernelName(), "nsa_window_fwd");
  EXPECT_EQ(info.num_regs, 128);

  // Moves transfer ownership; the moved-from context is empty.
  nsajit::Context other = std::move(ctx);
  EXPECT_EQ(ctx.get(), nullptr);
  EXPECT_NE(other.get(), nullptr);
  EXPECT_EQ(FakeDriver::get().fakecuda_primary_refcount(0), 1);
  other.reset();
  EXPECT_EQ(FakeDriver::get().fakecuda_primary_refcount(0), 0);
}

TEST_F(CppApi, ConstructorThrowsForABadDevice) {
  try {
    nsajit::Context ctx(5);
    FAIL() << "expected nsajit::Error";
  } catch (const nsajit::Error &e) {
    EXPECT_EQ(e.status(), NSAJIT_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("device_ordinal = 5"), std::string::npos) << e.what();
  }
}

TEST_F(CppApi, OfflineHelpers) {
  nsajit::Config cfg;
  std::string ptx = nsajit::compilePtx(cfg, NSAJIT_BRANCH_SELECTED, 80);
  EXPECT_NE(ptx.find(".target sm_80"), std::string::npos);
  EXPECT_EQ(ptx.back(), '\n');
  EXPECT_EQ(nsajit::kernelInfo(cfg, NSAJIT_BRANCH_SELECTED, 90).arch, 90);
  EXPECT_EQ(nsajit::version(), NSAJIT_VERSION_STRING);
  EXPECT_EQ(nsajit::kernelCompilerVersion(), nsajit::rt::compilerVersionString());
  EXPECT_NE(nsajit::cacheInfo().find(cacheDir.path()), std::string::npos);
  EXPECT_GE(nsajit::processCacheStats().compiles, 1u);
  EXPECT_THROW(nsajit::compilePtx(cfg, NSAJIT_BRANCH_SELECTED, 70), nsajit::Error);
}

TEST_F(CppApi, BackwardGatedAndUngated) {
  nsajit::Context ctx(0);
  nsajit::Config cfg;
  cfg.withHeads(1, 16).withWindow(32);
  const int T = 64;
  auto buf = [](std::size_t bytes) { return std::make_unique<FakeBuffer>(bytes); };
  auto q = buf(T * 16 * 128 * 2), k = buf(T * 128 * 2), v = buf(T * 128 * 2), o = buf(T * 16 * 128 * 2),
       lse = buf(T * 16 * 4), dout = buf(T * 16 * 128 * 2), gate = buf(T * 16 * 4), delta = buf(T * 16 * 4),
       dq = buf(T * 16 * 128 * 2), dk = buf(T * 128 * 2), dv = buf(T * 128 * 2), dgate = buf(T * 16 * 4);
  auto half = [&](const FakeBuffer &b, int heads) { return nsajit::Tensor::contiguous(b.ptr(), T, heads, 128); };
  auto row = [&](const FakeBuffer &b) { return nsajit::Tensor::contiguous(b.ptr(), T, 16); };
  void *stream = reinterpret_cast<void *>(0x77);
  EXPECT_NO_THROW(ctx.windowBackward(cfg, 1, T, half(*q, 16), half(*k, 1), half(*v, 1), half(*o, 16), row(*lse),
                                     half(*dout, 16), row(*gate), row(*delta), half(*dq, 16), half(*dk, 1),
                                     half(*dv, 1), row(*dgate), stream));
  FakeCudaLaunch l = FakeDriver::get().lastLaunch();
  EXPECT_EQ(l.count, 3);
  EXPECT_STREQ(l.kernel_name, "nsa_window_bwd_dkdv");
  EXPECT_EQ(l.stream, stream);
  EXPECT_EQ(l.u64[7], gate->ptr());   // gate
  EXPECT_EQ(l.u64[12], dgate->ptr()); // dgate
  // Ungated: no gate and no dgate reach the kernels.
  EXPECT_NO_THROW(ctx.windowBackward(cfg, 1, T, half(*q, 16), half(*k, 1), half(*v, 1), half(*o, 16), row(*lse),
                                     half(*dout, 16), row(*delta), half(*dq, 16), half(*dk, 1), half(*dv, 1)));
  l = FakeDriver::get().lastLaunch();
  EXPECT_EQ(l.count, 6);
  EXPECT_EQ(l.u64[7], 0u);
  EXPECT_EQ(l.u64[12], 0u);
  EXPECT_EQ(l.stream, nullptr);
  try {
    ctx.windowBackward(cfg, 1, T, half(*q, 16), half(*k, 1), half(*v, 1), half(*o, 16), row(*lse), half(*dout, 16),
                       row(*delta), half(*q, 16) /* dq over q */, half(*dk, 1), half(*dv, 1));
    FAIL() << "expected nsajit::Error";
  } catch (const nsajit::Error &e) {
    EXPECT_EQ(e.status(), NSAJIT_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("the output dq must not overlap the input q"), std::string::npos)
        << e.what();
  }

  // The other branches' wrappers reach their C functions.
  cfg.withHeads(1, 16).withSelection(64, 1);
  auto idx = buf(T * 4);
  auto ti = nsajit::Tensor::contiguous(idx->ptr(), T, 1, 1);
  EXPECT_NO_THROW(ctx.selectedBackward(cfg, 1, T, half(*q, 16), half(*k, 1), half(*v, 1), ti, half(*o, 16), row(*lse),
                                       half(*dout, 16), row(*gate), row(*delta), half(*dq, 16), half(*dk, 1),
                                       half(*dv, 1), row(*dgate)));
  EXPECT_STREQ(FakeDriver::get().lastLaunch().kernel_name, "nsa_selected_bwd_dkdv");
  EXPECT_NO_THROW(ctx.selectedBackward(cfg, 1, T, half(*q, 16), half(*k, 1), half(*v, 1), ti, half(*o, 16), row(*lse),
                                       half(*dout, 16), row(*delta), half(*dq, 16), half(*dk, 1), half(*dv, 1)));
  const int Tc = (T - 32) / 16 + 1;
  auto kc = nsajit::Tensor::contiguous(k->ptr(), Tc, 1, 128), vc = nsajit::Tensor::contiguous(v->ptr(), Tc, 1, 128),
       dkc = nsajit::Tensor::contiguous(dk->ptr(), Tc, 1, 128), dvc = nsajit::Tensor::contiguous(dv->ptr(), Tc, 1, 128);
  EXPECT_NO_THROW(ctx.compressedBackward(cfg, 1, T, half(*q, 16), kc, vc, half(*o, 16), row(*lse), half(*dout, 16),
                                         row(*gate), row(*delta), half(*dq, 16), dkc, dvc, row(*dgate)));
  EXPECT_STREQ(FakeDriver::get().lastLaunch().kernel_name, "nsa_compressed_bwd_dkdv");
  EXPECT_EQ(FakeDriver::get().lastLaunch().i32[1], Tc);
  EXPECT_NO_THROW(ctx.compressedBackward(cfg, 1, T, half(*q, 16), kc, vc, half(*o, 16), row(*lse), half(*dout, 16),
                                         row(*delta), half(*dq, 16), dkc, dvc));
  EXPECT_EQ(FakeDriver::get().lastLaunch().count, 18);

  // The gated sum of the branches and the backward settings.
  auto o2 = buf(T * 16 * 128 * 2), o3 = buf(T * 16 * 128 * 2);
  nsajit::Tensor gateRow = row(*gate);
  EXPECT_NO_THROW(ctx.gatedCombine(cfg, 1, T, half(*o, 16), &gateRow, half(*o2, 16), nullptr, half(*o3, 16), nullptr,
                                   half(*dq, 16)));
  EXPECT_STREQ(FakeDriver::get().lastLaunch().kernel_name, "nsa_window_combine");
  EXPECT_EQ(FakeDriver::get().lastLaunch().u64[3], gate->ptr());
  EXPECT_NO_THROW(ctx.setBackwardSplit(0));
  EXPECT_NO_THROW(ctx.setSelectionMapLimit(0));
  EXPECT_THROW(ctx.setBackwardSplit(-1), nsajit::Error);
}

TEST_F(CppApi, KernelsOfEachPass) {
  nsajit::Context ctx(0);
  nsajit::Config cfg;
  std::string_view ptx = ctx.compile(cfg, NSAJIT_BRANCH_SELECTED, NSAJIT_PASS_BACKWARD_DQ);
  EXPECT_NE(ptx.find(".entry nsa_selected_bwd_dq("), std::string_view::npos);
  EXPECT_EQ(ctx.kernelInfo(cfg, NSAJIT_BRANCH_SELECTED, NSAJIT_PASS_BACKWARD_DKDV).kernelName(),
            "nsa_selected_bwd_dkdv");
  EXPECT_EQ(nsajit::kernelInfo(cfg, NSAJIT_BRANCH_WINDOW, NSAJIT_PASS_BACKWARD_PRE, 80).kernelName(),
            "nsa_window_bwd_pre");
  std::string offline = nsajit::compilePtx(cfg, NSAJIT_BRANCH_WINDOW, NSAJIT_PASS_BACKWARD_DKDV, 80);
  EXPECT_NE(offline.find(".entry nsa_window_bwd_dkdv("), std::string::npos);
  EXPECT_NE(offline.find(".target sm_80"), std::string::npos);
  EXPECT_THROW(nsajit::compilePtx(cfg, NSAJIT_BRANCH_WINDOW, static_cast<nsajit_kernel_pass>(5), 80), nsajit::Error);
}

TEST_F(CppApi, PrepareAndTune) {
  nsajit::Context ctx(0);
  nsajit::Config cfg;
  EXPECT_EQ(ctx.prepare(cfg), 16); // Dk = Dv: one pooling pair; the gated combination
  EXPECT_EQ(compiler.calls, 16);
  EXPECT_EQ(ctx.prepare(cfg, NSAJIT_PREPARE_FORWARD), 4);
  EXPECT_EQ(compiler.calls, 16);
  EXPECT_THROW(ctx.prepare(cfg, 0), nsajit::Error);
  nsajit::TuneResult r = ctx.tune(cfg, NSAJIT_BRANCH_WINDOW, 1, 256, 2);
  EXPECT_GT(r.candidates, 1);
  EXPECT_EQ(r.failed, 0);
  EXPECT_NE(r.database().find("tuning/"), std::string_view::npos);
  EXPECT_THROW(ctx.tune(cfg, NSAJIT_BRANCH_WINDOW, 1, 0), nsajit::Error);
}

namespace {
// A pass where the arch belongs must not compile (it would become arch = pass).
template <typename P, typename = void>
struct KernelInfoTakes3 : std::false_type {};
template <typename P>
struct KernelInfoTakes3<P, std::void_t<decltype(nsajit::kernelInfo(std::declval<const nsajit_config &>(),
                                                                    NSAJIT_BRANCH_WINDOW, std::declval<P>()))>>
    : std::true_type {};
template <typename P, typename = void>
struct CompilePtxTakes3 : std::false_type {};
template <typename P>
struct CompilePtxTakes3<P, std::void_t<decltype(nsajit::compilePtx(std::declval<const nsajit_config &>(),
                                                                    NSAJIT_BRANCH_WINDOW, std::declval<P>()))>>
    : std::true_type {};
} // namespace
static_assert(KernelInfoTakes3<int>::value && CompilePtxTakes3<int>::value);
static_assert(!KernelInfoTakes3<nsajit_kernel_pass>::value && !CompilePtxTakes3<nsajit_kernel_pass>::value);
