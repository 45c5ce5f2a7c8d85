// The C API against the fake CUDA driver: contexts, compile-or-load through the
// caches, kernel launches with the exact parameter block of KernelAbi.h, and
// the driver failures (JIT errors, launch errors, shared memory limits, GPUs
// nsajit does not support) as clear statuses and messages.
#include "TestUtil.h"
#include "TuningDb.h"
#include "Validate.h"

#include "nsajit/nsajit.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

using namespace nsajit;
using namespace nsajit::rt;
using namespace nsajit::rt::test;

namespace {

bool contains(const std::string &haystack, const char *needle) { return haystack.find(needle) != std::string::npos; }

#define EXPECT_ERROR_WITH(call, st, ...)                                                                             \
  do {                                                                                                               \
    nsajit_status s_ = (call);                                                                                       \
    std::string m_ = nsajit_last_error();                                                                            \
    EXPECT_EQ(s_, st) << nsajit_status_string(s_) << ": " << m_;                                                     \
    for (const char *part : {__VA_ARGS__})                                                                           \
      EXPECT_TRUE(contains(m_, part)) << "message '" << m_ << "' lacks '" << part << "'";                            \
  } while (0)

// Contiguous device tensors for one forward call of `branch`.
struct Tensors {
  std::unique_ptr<FakeBuffer> q, k, v, idx, out, lse;
  nsajit_tensor tq{}, tk{}, tv{}, ti{}, to{}, tl{};

  Tensors(const nsajit_config &c, Branch branch, int B, int T) {
    const std::int64_t H = c.num_kv_heads, HQ = H * c.group, Dk = c.head_dim_qk, Dv = c.head_dim_v;
    const std::int64_t Tkv = branch == Branch::Compressed ? compressedLength(T, c.cmp_block, c.cmp_stride) : T;
    auto make = [](std::unique_ptr<FakeBuffer> &buf, nsajit_tensor &t, std::int64_t B, std::int64_t N,
                   std::int64_t heads, std::int64_t dim, std::size_t elemBytes) {
      std::size_t bytes = std::max<std::int64_t>(1, B * N * heads * dim) * elemBytes;
      buf = std::make_unique<FakeBuffer>(bytes);
      t = {buf->ptr(), N * heads * dim, heads * dim, dim};
    };
    make(q, tq, B, T, HQ, Dk, 2);
    make(k, tk, B, Tkv, H, Dk, 2);
    make(v, tv, B, Tkv, H, Dv, 2);
    make(idx, ti, B, T, H, c.slc_count, 4);
    make(out, to, B, T, HQ, Dv, 2);
    make(lse, tl, B, T, HQ, 1, 4);
  }
};

class FakeGpu : public ::testing::Test {
protected:
  TempDir cacheDir;
  RecordingCompiler compiler;
  FakeDriver &fake = FakeDriver::get();
  nsajit_config cfg{};
  std::vector<nsajit_context *> contexts;

  void SetUp() override {
    fake.fakecuda_reset();
    CudaDriver::resetForTesting(NSAJIT_FAKE_CUDA_PATH);
    DiskCache::setGlobalForTesting(std::make_shared<DiskCache>(cacheDir.path()));
    PtxCache::global().resetForTesting(compiler.fn());
    nsajit_config_init(&cfg);
  }
  void TearDown() override {
    for (nsajit_context *c : contexts)
      nsajit_context_destroy(c);
    PtxCache::global().resetForTesting(nullptr);
    DiskCache::setGlobalForTesting(std::make_shared<DiskCache>("", "unit tests"));
    CudaDriver::resetForTesting("");
  }

  nsajit_context *create(int ordinal = 0) {
    nsajit_context *ctx = nullptr;
    nsajit_status st = nsajit_context_create(&ctx, ordinal);
    EXPECT_EQ(st, NSAJIT_OK) << nsajit_last_error();
    if (ctx)
      contexts.push_back(ctx);
    return ctx;
  }
  void destroy(nsajit_context *ctx) {
    contexts.erase(std::remove(contexts.begin(), contexts.end(), ctx), contexts.end());
    EXPECT_EQ(nsajit_context_destroy(ctx), NSAJIT_OK);
  }
  std::string info(nsajit_context *ctx) {
    char buf[1024];
    EXPECT_EQ(nsajit_device_info(ctx, buf, sizeof buf), NSAJIT_OK) << nsajit_last_error();
    return buf;
  }
  nsajit_cache_counters stats(nsajit_context *ctx) {
    nsajit_cache_counters s{};
    s.struct_size = sizeof s;
    EXPECT_EQ(nsajit_cache_stats(ctx, &s), NSAJIT_OK);
    return s;
  }
  nsajit_status selected(nsajit_context *ctx, Tensors &t, int B, int T, void *stream = nullptr) {
    return nsajit_selected_forward(ctx, &cfg, B, T, &t.tq, &t.tk, &t.tv, &t.ti, &t.to, &t.tl, stream);
  }
  CUcontext primaryContext(int device = 0) {
    CUcontext c = nullptr;
    fake.primaryRetain(&c, device);
    fake.primaryRelease(device);
    return c;
  }
};

} // namespace

TEST_F(FakeGpu, ContextRetainsAndReleasesThePrimaryContext) {
  ASSERT_EQ(fake.fakecuda_primary_refcount(0), 0);
  nsajit_context *ctx = create();
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(fake.fakecuda_primary_refcount(0), 1);
  std::string text = info(ctx);
  for (const char *part : {"device 0: Fake H100 (nsajit test driver)", "compute capability 9.0", "kernels: sm_90a",
                           "132 SMs", "opt-in 227 KiB", "driver CUDA 13.0", "primary context"})
    EXPECT_TRUE(contains(text, part)) << text << " lacks " << part;
  destroy(ctx);
  EXPECT_EQ(fake.fakecuda_primary_refcount(0), 0);
}

TEST_F(FakeGpu, ContextUsesTheCallersCurrentContext) {
  CUcontext mine = nullptr;
  ASSERT_EQ(fake.primaryRetain(&mine, 0), CUDA_SUCCESS);
  ASSERT_EQ(fake.ctxSetCurrent(mine), CUDA_SUCCESS);
  nsajit_context *ctx = create(-1);
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(fake.fakecuda_primary_refcount(0), 1); // not retained again
  EXPECT_TRUE(contains(info(ctx), "caller's current context")) << info(ctx);
  destroy(ctx);
  EXPECT_EQ(fake.fakecuda_primary_refcount(0), 1); // ours is untouched
  fake.ctxSetCurrent(nullptr);
  fake.primaryRelease(0);
}

TEST_F(FakeGpu, DeviceOrdinals) {
  fake.fakecuda_set_device(2, 9, 0, "Fake H100", 232448, 0);
  nsajit_context *ctx = nullptr;
  EXPECT_ERROR_WITH(nsajit_context_create(&ctx, 2), NSAJIT_ERROR_INVALID_ARGUMENT, "device_ordinal = 2",
                    "2 CUDA device(s)", "0..1");
  EXPECT_ERROR_WITH(nsajit_context_create(&ctx, -7), NSAJIT_ERROR_INVALID_ARGUMENT, "device_ordinal = -7");
  EXPECT_EQ(ctx, nullptr);
  ctx = create(1);
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(fake.fakecuda_primary_refcount(1), 1);
  EXPECT_TRUE(contains(info(ctx), "device 1:"));
  // -1 with no current context: device 0.
  nsajit_context *dflt = create(-1);
  EXPECT_EQ(fake.fakecuda_primary_refcount(0), 1);
  EXPECT_TRUE(contains(info(dflt), "device 0:"));
}

TEST_F(FakeGpu, NoDeviceAndBrokenDrivers) {
  fake.fakecuda_set_device(0, 9, 0, "none", 0, 0);
  nsajit_context *ctx = nullptr;
  EXPECT_ERROR_WITH(nsajit_context_create(&ctx, 0), NSAJIT_ERROR_NO_DEVICE, "no CUDA device", "0 devices");

  fake.fakecuda_reset();
  fake.fakecuda_set_init_result(CUDA_ERROR_NO_DEVICE);
  CudaDriver::resetForTesting(NSAJIT_FAKE_CUDA_PATH);
  EXPECT_ERROR_WITH(nsajit_context_create(&ctx, 0), NSAJIT_ERROR_NO_DEVICE, "no CUDA device", "cuInit",
                    "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)");

  CudaDriver::resetForTesting(NSAJIT_FAKE_CUDA_OLD_PATH);
  EXPECT_ERROR_WITH(nsajit_context_create(&ctx, 0), NSAJIT_ERROR_DRIVER_ERROR, "lacks the Driver API entry points",
                    "cuLaunchKernel", "too old");
  EXPECT_EQ(ctx, nullptr);
}

TEST_F(FakeGpu, SelectedForwardLaunchesWithTheKernelAbi) {
  nsajit_context *ctx = create();
  const int B = 2, T = 300;
  Tensors t(cfg, Branch::Selected, B, T);
  void *stream = reinterpret_cast<void *>(0x5151);
  ASSERT_EQ(selected(ctx, t, B, T, stream), NSAJIT_OK) << nsajit_last_error();
  EXPECT_STREQ(nsajit_last_error(), "");

  FakeCudaLaunch l = fake.lastLaunch();
  KernelSpec spec = specFromConfig(&cfg, Branch::Selected, Arch::SM90a);
  EXPECT_EQ(l.count, 1);
  EXPECT_STREQ(l.kernel_name, "nsa_selected_fwd");
  EXPECT_EQ(l.context, primaryContext());
  EXPECT_EQ(l.stream, stream);
  EXPECT_EQ(l.grid[0], unsigned((T + spec.tile.tokensPerCta - 1) / spec.tile.tokensPerCta)); // the union schedule
  EXPECT_EQ(l.grid[1], 4u);          // H
  EXPECT_EQ(l.grid[2], unsigned(B));
  EXPECT_EQ(l.block[0], unsigned(threadsPerCta(spec)));
  EXPECT_EQ(l.block[1], 1u);
  EXPECT_EQ(l.block[2], 1u);
  EXPECT_EQ(l.shared, unsigned(sharedMemoryBytes(spec)));
  const nsajit_tensor *views[6] = {&t.tq, &t.tk, &t.tv, &t.ti, &t.to, &t.tl};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(l.u64[i], views[i]->data) << "pointer " << i;
    EXPECT_EQ(static_cast<std::int64_t>(l.u64[7 + 3 * i]), views[i]->stride_batch) << "tensor " << i;
    EXPECT_EQ(static_cast<std::int64_t>(l.u64[8 + 3 * i]), views[i]->stride_token) << "tensor " << i;
    EXPECT_EQ(static_cast<std::int64_t>(l.u64[9 + 3 * i]), views[i]->stride_head) << "tensor " << i;
  }
  EXPECT_EQ(l.u64[6], 0u); // tokenDone: one kernel computes every token
  EXPECT_EQ(l.i32[0], T);
  EXPECT_EQ(l.i32[1], T);
  // The caller's (empty) current context is restored.
  CUcontext current = reinterpret_cast<CUcontext>(0x1);
  fake.ctxGetCurrent(&current);
  EXPECT_EQ(current, nullptr);
  // The kernel was generated for this GPU's arch.
  EXPECT_EQ(compiler.calls, 1);
  EXPECT_EQ(compiler.lastSpec, spec);
}

TEST_F(FakeGpu, SelectedForwardRunsTwoKernelsOnHopper) {
  // The warp-specialised union kernel first, then the default kernel on the
  // CTAs it left, through one tokenDone buffer (the other tests turn the
  // schedule off; the context reads the switch when it is created).
  ::setenv("NSAJIT_SELECTED_TWO_KERNEL", "1", 1);
  nsajit_context *ctx = create();
  ::setenv("NSAJIT_SELECTED_TWO_KERNEL", "0", 1);
  const int B = 2, T = 300;
  Tensors t(cfg, Branch::Selected, B, T);
  ASSERT_EQ(selected(ctx, t, B, T), NSAJIT_OK) << nsajit_last_error();
  std::vector<FakeCudaLaunch> all = fake.launches();
  ASSERT_EQ(all.size(), 2u);
  const KernelSpec spec = specFromConfig(&cfg, Branch::Selected, Arch::SM90a);
  KernelSpec first = spec;
  first.tile = selectedSpecialisedTile(spec);
  ASSERT_EQ(first.tile.warps, 8);
  EXPECT_EQ(first.tile.tokensPerCta, 128 / cfg.group);
  EXPECT_EQ(first.tile.kvChunk, 64);
  EXPECT_TRUE(forwardWarpSpecialised(first));
  const unsigned perCta = unsigned(first.tile.tokensPerCta * forwardTilesPerCta(first));
  EXPECT_EQ(all[0].grid[0], (T + perCta - 1) / perCta);
  EXPECT_EQ(all[0].block[0], unsigned(threadsPerCta(first)));
  EXPECT_EQ(all[0].shared, unsigned(sharedMemoryBytes(first)));
  EXPECT_EQ(all[1].block[0], unsigned(threadsPerCta(spec)));
  EXPECT_EQ(all[1].grid[0], unsigned((T + spec.tile.tokensPerCta - 1) / spec.tile.tokensPerCta));
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(all[0].u64[i], all[1].u64[i]) << "pointer " << i; // the same inputs and outputs
  EXPECT_NE(all[0].u64[6], 0u);
  EXPECT_EQ(all[1].u64[6], all[0].u64[6]);
  EXPECT_EQ(compiler.calls, 2);

  // A config's own tile runs just that kernel, for every token.
  cfg.tile_warps = 2, cfg.tile_tokens = 2, cfg.tile_kv_chunk = 64;
  ASSERT_EQ(selected(ctx, t, B, T), NSAJIT_OK) << nsajit_last_error();
  ASSERT_EQ(fake.launches().size(), 3u);
  EXPECT_EQ(fake.lastLaunch().u64[6], 0u);
  // So do the sm_80 kernels.
  cfg.tile_warps = cfg.tile_tokens = cfg.tile_kv_chunk = 0;
  ASSERT_EQ(nsajit_context_set_arch(ctx, 80), NSAJIT_OK) << nsajit_last_error();
  ASSERT_EQ(selected(ctx, t, B, T), NSAJIT_OK) << nsajit_last_error();
  ASSERT_EQ(fake.launches().size(), 4u);
  EXPECT_EQ(fake.lastLaunch().u64[6], 0u);
}

TEST_F(FakeGpu, CompressedAndWindowForward) {
  nsajit_context *ctx = create();
  const int B = 1, T = 1000;
  Tensors c(cfg, Branch::Compressed, B, T);
  ASSERT_EQ(nsajit_compressed_forward(ctx, &cfg, B, T, &c.tq, &c.tk, &c.tv, &c.to, &c.tl, nullptr), NSAJIT_OK)
      << nsajit_last_error();
  FakeCudaLaunch l = fake.lastLaunch();
  KernelSpec spec = specFromConfig(&cfg, Branch::Compressed, Arch::SM90a);
  EXPECT_STREQ(l.kernel_name, "nsa_compressed_fwd");
  EXPECT_EQ(l.i32[1], (T - 32) / 16 + 1);
  const int tokensPerCta = spec.tile.tokensPerCta * forwardTilesPerCta(spec);
  EXPECT_EQ(l.grid[0], unsigned((T + tokensPerCta - 1) / tokensPerCta));
  EXPECT_EQ(l.u64[3], 0u); // no indices
  EXPECT_EQ(l.u64[1], c.tk.data);
  // More than 48 KiB of shared memory: opted in on the function before the launch.
  ASSERT_GT(sharedMemoryBytes(spec), 48 * 1024);
  EXPECT_EQ(l.shared, unsigned(sharedMemoryBytes(spec)));
  EXPECT_EQ(fake.fakecuda_max_dynamic_shared(), sharedMemoryBytes(spec));

  cfg.window = 128;
  Tensors w(cfg, Branch::Window, B, T);
  ASSERT_EQ(nsajit_window_forward(ctx, &cfg, B, T, &w.tq, &w.tk, &w.tv, &w.to, &w.tl, nullptr), NSAJIT_OK)
      << nsajit_last_error();
  l = fake.lastLaunch();
  EXPECT_STREQ(l.kernel_name, "nsa_window_fwd");
  EXPECT_EQ(l.i32[1], T);
  EXPECT_EQ(compiler.lastSpec.window, 128);
  EXPECT_EQ(l.count, 2);
}

TEST_F(FakeGpu, CompressedWithoutCompleteBlocksPassesKvLenZero) {
  nsajit_context *ctx = create();
  const int T = 10; // < l = 32
  Tensors t(cfg, Branch::Compressed, 1, T);
  nsajit_tensor none{0, 0, 0, 0};
  ASSERT_EQ(nsajit_compressed_forward(ctx, &cfg, 1, T, &t.tq, &none, &none, &t.to, &t.tl, nullptr), NSAJIT_OK)
      << nsajit_last_error();
  FakeCudaLaunch l = fake.lastLaunch();
  EXPECT_EQ(l.i32[0], T);
  EXPECT_EQ(l.i32[1], 0);
  EXPECT_EQ(l.u64[1], 0u);
}

TEST_F(FakeGpu, KernelsAreCompiledOnceAndCached) {
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  nsajit_cache_counters s = stats(ctx);
  EXPECT_EQ(s.compiles, 1u);
  EXPECT_EQ(s.kernel_hits, 4u);
  EXPECT_EQ(s.modules_loaded, 1u);
  EXPECT_EQ(s.disk_writes, 1u);
  EXPECT_EQ(s.disk_hits, 0u);
  EXPECT_EQ(compiler.calls, 1);
  EXPECT_EQ(fake.fakecuda_module_loads(), 1);
  EXPECT_EQ(fake.lastLaunch().count, 5);

  // A different configuration is a different kernel.
  cfg.slc_count = 8;
  Tensors t8(cfg, Branch::Selected, 1, 64);
  ASSERT_EQ(selected(ctx, t8, 1, 64), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(stats(ctx).compiles, 2u);
  EXPECT_EQ(compiler.lastSpec.slcCount, 8);

  // A second context on the same GPU loads its own module from the PTX in memory.
  nsajit_context *ctx2 = create();
  ASSERT_EQ(selected(ctx2, t8, 1, 64), NSAJIT_OK);
  nsajit_cache_counters s2 = stats(ctx2);
  EXPECT_EQ(s2.compiles, 0u);
  EXPECT_EQ(s2.ptx_memory_hits, 1u);
  EXPECT_EQ(s2.modules_loaded, 1u);
  EXPECT_EQ(compiler.calls, 2);

  // Destroying a context unloads its modules.
  int loaded = fake.fakecuda_loaded_modules();
  destroy(ctx);
  EXPECT_EQ(fake.fakecuda_loaded_modules(), loaded - 2);
  destroy(ctx2);
  EXPECT_EQ(fake.fakecuda_loaded_modules(), loaded - 3);
}

TEST_F(FakeGpu, DiskCacheServesANewProcessAndRejectsDamage) {
  Tensors t(cfg, Branch::Selected, 1, 64);
  {
    nsajit_context *ctx = create();
    ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
    destroy(ctx);
  }
  ASSERT_EQ(compiler.calls, 1);
  std::vector<std::filesystem::path> files;
  for (auto &e : std::filesystem::directory_iterator(cacheDir.path()))
    files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);

  // "A new process": the memory cache is empty; the PTX comes from disk.
  PtxCache::global().resetForTesting(compiler.fn());
  nsajit_context *ctx = create();
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  nsajit_cache_counters s = stats(ctx);
  EXPECT_EQ(s.disk_hits, 1u);
  EXPECT_EQ(s.compiles, 0u);
  EXPECT_EQ(compiler.calls, 1);
  destroy(ctx);

  // A damaged file is rejected and the kernel compiled again (and rewritten).
  {
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('#');
  }
  PtxCache::global().resetForTesting(compiler.fn());
  ctx = create();
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  s = stats(ctx);
  EXPECT_EQ(s.disk_rejects, 1u);
  EXPECT_EQ(s.disk_hits, 0u);
  EXPECT_EQ(s.compiles, 1u);
  EXPECT_EQ(s.disk_writes, 1u);
  EXPECT_EQ(compiler.calls, 2);
  destroy(ctx);

  // With the PTX on disk, a broken compiler does not matter.
  PtxCache::global().resetForTesting(compiler.fn());
  compiler.failWith = "the compiler is broken";
  ctx = create();
  EXPECT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(stats(ctx).disk_hits, 1u);
}

TEST_F(FakeGpu, PtxasAssemblesAndItsMachineCodeIsCached) {
  FakePtxas ptxas;
  Tensors t(cfg, Branch::Selected, 1, 64);
  nsajit_context *ctx = create();
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  nsajit_cache_counters s = stats(ctx);
  EXPECT_EQ(s.compiles, 1u);
  EXPECT_EQ(s.ptxas_runs, 1u);
  EXPECT_EQ(s.modules_loaded, 1u);
  EXPECT_EQ(s.disk_writes, 2u); // the PTX and the machine code
  EXPECT_EQ(fake.fakecuda_image_loads(), 1);
  EXPECT_EQ(fake.fakecuda_ptx_loads(), 0); // no driver JIT
  ASSERT_EQ(ptxas.calls().size(), 1u);
  EXPECT_EQ(ptxas.calls()[0].rfind("-arch=sm_90a -O3 ", 0), 0u) << ptxas.calls()[0];
  destroy(ctx);

  auto newProcess = [&] {
    PtxCache::global().resetForTesting(compiler.fn()); // the memory cache is empty
    return create();
  };
  // A new process loads the machine code: neither the compiler nor ptxas runs.
  ctx = newProcess();
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  s = stats(ctx);
  EXPECT_EQ(s.disk_hits, 1u);
  EXPECT_EQ(s.machine_code_disk_hits, 1u);
  EXPECT_EQ(s.compiles + s.ptxas_runs, 0u);
  EXPECT_EQ(ptxas.calls().size(), 1u);
  destroy(ctx);

  // Machine code the driver refuses (say, after a driver downgrade) is assembled again.
  fake.fakecuda_set_image_load_error(CUDA_ERROR_INVALID_IMAGE);
  ctx = newProcess();
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  s = stats(ctx);
  EXPECT_EQ(s.machine_code_disk_hits, 0u);
  EXPECT_EQ(s.ptxas_runs, 1u);
  EXPECT_EQ(s.compiles, 0u); // its PTX came from disk
  destroy(ctx);

  // Damaged machine code is rejected and rewritten.
  std::filesystem::path codeFile;
  for (auto &e : std::filesystem::directory_iterator(cacheDir.path())) {
    std::ifstream in(e.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.find("machine code of Cuda compilation tools, release 99.9") != std::string::npos)
      codeFile = e.path();
  }
  ASSERT_FALSE(codeFile.empty());
  {
    std::fstream io(codeFile, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(-3, std::ios::end);
    io.put('#');
  }
  ctx = newProcess();
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  s = stats(ctx);
  EXPECT_EQ(s.disk_rejects, 1u);
  EXPECT_EQ(s.ptxas_runs, 1u);
  EXPECT_EQ(s.disk_writes, 1u);
  destroy(ctx);

  // With the machine code on disk a broken compiler does not matter, and nsajit_compile
  // (which returns the PTX) reads the PTX from disk.
  compiler.failWith = "the compiler is broken";
  ctx = newProcess();
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(stats(ctx).machine_code_disk_hits, 1u);
  const char *ptx = nullptr;
  ASSERT_EQ(nsajit_compile(ctx, &cfg, NSAJIT_BRANCH_SELECTED, &ptx), NSAJIT_OK) << nsajit_last_error();
  ASSERT_NE(ptx, nullptr);
  EXPECT_NE(std::string(ptx).find(".entry"), std::string::npos);
}

TEST_F(FakeGpu, PtxasVersionIsKeptOnDiskUntilTheBinaryChanges) {
  FakePtxas ptxas;
  std::shared_ptr<const Ptxas> first = Ptxas::get();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->version(), "Cuda compilation tools, release 99.9, V99.9.0 (fake)");
  EXPECT_EQ(ptxas.versionRuns(), 1);
  // A new process reads the version from the disk cache: no ptxas runs.
  Ptxas::resetForTesting();
  std::shared_ptr<const Ptxas> again = Ptxas::get();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->version(), first->version());
  EXPECT_EQ(ptxas.versionRuns(), 1);
  // A ptxas updated in place (another size and times) is asked again.
  {
    std::ofstream(ptxas.path(), std::ios::app) << "# updated\n";
  }
  Ptxas::resetForTesting();
  ASSERT_TRUE(Ptxas::get());
  EXPECT_EQ(ptxas.versionRuns(), 2);
  // Without a disk cache every process asks.
  DiskCache::setGlobalForTesting(std::make_shared<DiskCache>("", "unit tests"));
  Ptxas::resetForTesting();
  ASSERT_TRUE(Ptxas::get());
  Ptxas::resetForTesting();
  ASSERT_TRUE(Ptxas::get());
  EXPECT_EQ(ptxas.versionRuns(), 4);
}

TEST_F(FakeGpu, PtxasAssemblesForTheGpusOwnArchitecture) {
  FakePtxas ptxas;
  char info[1024];
  ASSERT_EQ(nsajit_cache_info(info, sizeof info), NSAJIT_OK);
  EXPECT_NE(std::string(info).find("; machine code: ptxas "), std::string::npos) << info;
  EXPECT_NE(std::string(info).find("(Cuda compilation tools, release 99.9, V99.9.0 (fake))"), std::string::npos) << info;
  fake.fakecuda_set_device(1, 8, 6, "Fake A40", 101376, 0);
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  ASSERT_EQ(ptxas.calls().size(), 1u);
  EXPECT_EQ(ptxas.calls()[0].rfind("-arch=sm_86 ", 0), 0u) << ptxas.calls()[0]; // sm_80 PTX, the GPU's SASS
}

TEST_F(FakeGpu, PtxasFailuresFallBackToTheDriverJit) {
  FakePtxas ptxas;
  ScopedEnv failing("FAKE_PTXAS_FAIL", "out of resources");
  LogCapture log;
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  nsajit_cache_counters s = stats(ctx);
  EXPECT_EQ(s.ptxas_runs, 0u);
  EXPECT_EQ(s.disk_writes, 1u); // the PTX only
  EXPECT_EQ(fake.fakecuda_ptx_loads(), 1);
  EXPECT_TRUE(log.hasWarning({"ptxas failed for selected fwd", "exited with 255", "out of resources",
                               "using the driver's JIT"}))
      << log.all();
}

TEST_F(FakeGpu, AHungPtxasIsStoppedAndNotUsedAgain) {
  ScopedEnv timeout("NSAJIT_PTXAS_TIMEOUT_S", "0.3");
  ScopedEnv slow("FAKE_PTXAS_SLEEP", "5");
  FakePtxas ptxas;
  LogCapture log;
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 4.0);
  EXPECT_EQ(fake.fakecuda_ptx_loads(), 1); // the driver's JIT took over
  EXPECT_TRUE(log.hasWarning({"ran longer than 0.3 s and was stopped", "driver's JIT from now on"})) << log.all();
  // Another kernel goes straight to the driver's JIT.
  cfg.slc_count = 8;
  Tensors t8(cfg, Branch::Selected, 1, 64);
  ASSERT_EQ(selected(ctx, t8, 1, 64), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(ptxas.calls().size(), 1u);
  EXPECT_EQ(fake.fakecuda_ptx_loads(), 2);
}

TEST_F(FakeGpu, AMissingPtxasIsNamedAndTheDriverJitServes) {
  ScopedEnv missing("NSAJIT_PTXAS", "/nonexistent/ptxas");
  Ptxas::resetForTesting();
  LogCapture log;
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(fake.fakecuda_ptx_loads(), 1);
  EXPECT_TRUE(log.hasWarning({"NSAJIT_PTXAS = '/nonexistent/ptxas' is not an executable file"})) << log.all();
  Ptxas::resetForTesting();
}

TEST_F(FakeGpu, UnwritableCacheDirectoryNeverFailsALaunch) {
  {
    std::ofstream(cacheDir / "file") << "x";
  }
  std::vector<std::string> warnings;
  {
    LogCapture log;
    ScopedEnv env("NSAJIT_CACHE_DIR", (cacheDir / "file/sub").c_str());
    DiskCache::setGlobalForTesting(nullptr); // re-read the environment
    nsajit_context *ctx = create();
    Tensors t(cfg, Branch::Selected, 1, 64);
    EXPECT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
    EXPECT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
    nsajit_cache_counters s = stats(ctx);
    EXPECT_EQ(s.compiles, 1u);
    EXPECT_EQ(s.disk_writes, 0u);
    EXPECT_EQ(s.kernel_hits, 1u);
    warnings = log.warnings();
  }
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_TRUE(contains(warnings[0], "file/sub")) << warnings[0];
  EXPECT_TRUE(contains(warnings[0], "memory only")) << warnings[0];
  char buf[1024];
  ASSERT_EQ(nsajit_cache_info(buf, sizeof buf), NSAJIT_OK);
  EXPECT_TRUE(contains(buf, "disk cache: off")) << buf;
}

TEST_F(FakeGpu, ConcurrentLaunchesCompileOnce) {
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  nsajit_config cfg2 = cfg;
  cfg2.slc_count = 4;
  Tensors t2(cfg2, Branch::Selected, 1, 64);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      for (int j = 0; j < 25; ++j) {
        const nsajit_config &c = i % 2 ? cfg : cfg2;
        Tensors &tt = i % 2 ? t : t2;
        if (nsajit_selected_forward(ctx, &c, 1, 64, &tt.tq, &tt.tk, &tt.tv, &tt.ti, &tt.to, &tt.tl, nullptr) !=
            NSAJIT_OK)
          failures.fetch_add(1);
      }
    });
  for (auto &th : threads)
    th.join();
  EXPECT_EQ(failures.load(), 0);
  nsajit_cache_counters s = stats(ctx);
  EXPECT_EQ(s.compiles, 2u);
  EXPECT_EQ(s.modules_loaded, 2u);
  EXPECT_EQ(s.kernel_hits, 198u);
  EXPECT_EQ(fake.lastLaunch().count, 200);
}

TEST_F(FakeGpu, InvalidArgumentsFailBeforeCompilingOrLaunching) {
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  t.tq.stride_head = 130;
  EXPECT_ERROR_WITH(selected(ctx, t, 1, 64), NSAJIT_ERROR_INVALID_ARGUMENT, "q.stride_head = 130",
                    "multiple of 8");
  t.tq.stride_head = 128;
  t.to.data += 8;
  EXPECT_ERROR_WITH(selected(ctx, t, 1, 64), NSAJIT_ERROR_INVALID_ARGUMENT, "out.data", "16-byte aligned");
  t.to.data -= 8;
  EXPECT_ERROR_WITH(nsajit_selected_forward(ctx, &cfg, 1, 64, &t.tq, &t.tk, &t.tv, nullptr, &t.to, &t.tl, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "indices is NULL");
  EXPECT_ERROR_WITH(selected(ctx, t, 0, 64), NSAJIT_ERROR_INVALID_ARGUMENT, "batch = 0");
  nsajit_config bad = cfg;
  bad.group = 5;
  EXPECT_ERROR_WITH(nsajit_selected_forward(ctx, &bad, 1, 64, &t.tq, &t.tk, &t.tv, &t.ti, &t.to, &t.tl, nullptr),
                    NSAJIT_ERROR_UNSUPPORTED, "group (G) = 5", "allowed: 1, 2, 4, 8, 16, 32");
  EXPECT_ERROR_WITH(nsajit_selected_forward(ctx, nullptr, 1, 64, &t.tq, &t.tk, &t.tv, &t.ti, &t.to, &t.tl, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "config is NULL");
  EXPECT_EQ(compiler.calls, 0);
  EXPECT_EQ(fake.lastLaunch().count, 0);
}

TEST_F(FakeGpu, PointersOutsideDeviceMemoryAreRejected) {
  nsajit_context *ctx = create();
  const int T = 64;
  Tensors t(cfg, Branch::Selected, 1, T);
  // Host memory the driver does not know.
  std::vector<std::uint64_t> host(1 << 20);
  std::uint64_t hostPtr = (reinterpret_cast<std::uint64_t>(host.data()) + 255) & ~std::uint64_t(255);
  nsajit_tensor saved = t.tk;
  t.tk.data = hostPtr;
  EXPECT_ERROR_WITH(selected(ctx, t, 1, T), NSAJIT_ERROR_INVALID_ARGUMENT, "k.data = 0x",
                    "not memory the CUDA driver knows", "NSAJIT_CHECK_POINTERS=0");
  t.tk = saved;
  // A tensor larger than its allocation: all six in one allocation, q last
  // and 256 bytes short (so that it overlaps no other argument).
  {
    const std::uint64_t qBytes = std::uint64_t(T) * 64 * 128 * 2, kvBytes = std::uint64_t(T) * 4 * 128 * 2,
                        idxBytes = std::uint64_t(T) * 4 * 16 * 4, lseBytes = std::uint64_t(T) * 64 * 4;
    FakeBuffer arena(kvBytes * 2 + idxBytes + qBytes + lseBytes + qBytes - 256);
    nsajit_tensor q = t.tq, k = t.tk, v = t.tv, idx = t.ti, out = t.to, lse = t.tl; // moved into the arena
    std::uint64_t at = arena.ptr();
    for (nsajit_tensor *view : {&k, &v, &idx, &out, &lse, &q}) {
      view->data = at;
      at += view == &k || view == &v ? kvBytes : view == &idx ? idxBytes : view == &lse ? lseBytes : qBytes;
    }
    EXPECT_ERROR_WITH(nsajit_selected_forward(ctx, &cfg, 1, T, &q, &k, &v, &idx, &out, &lse, nullptr),
                      NSAJIT_ERROR_INVALID_ARGUMENT, "q needs", "allocation",
                      "256 bytes earlier");
  }
  EXPECT_EQ(fake.lastLaunch().count, 0);
  // Systems where the GPU reads pageable host memory (HMM/ATS) accept host pointers.
  fake.fakecuda_set_device(1, 9, 0, "Fake GH200", 232448, 1);
  nsajit_context *hmm = create();
  t.tk.data = hostPtr;
  EXPECT_EQ(selected(hmm, t, 1, T), NSAJIT_OK) << nsajit_last_error();
  // And the check can be switched off.
  fake.fakecuda_set_device(1, 9, 0, "Fake H100", 232448, 0);
  ScopedEnv env("NSAJIT_CHECK_POINTERS", "0");
  nsajit_context *unchecked = create();
  EXPECT_EQ(selected(unchecked, t, 1, T), NSAJIT_OK) << nsajit_last_error();
}

TEST_F(FakeGpu, CompileErrorsCarryTheCompilersMessage) {
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  compiler.failWith = "nsa-lower-to-gpu: no mma layout for G = 16";
  EXPECT_ERROR_WITH(selected(ctx, t, 1, 64), NSAJIT_ERROR_COMPILE_ERROR,
                    "nsa-lower-to-gpu: no mma layout for G = 16", "selected fwd bf16 sm_90a");
  EXPECT_EQ(fake.lastLaunch().count, 0);
  // Failures are not cached: a fixed compiler succeeds.
  compiler.failWith.clear();
  EXPECT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
}

TEST_F(FakeGpu, JitErrorsReportTheDriverLog) {
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  fake.fakecuda_set_module_load_error(CUDA_ERROR_INVALID_PTX,
                                      "ptxas application ptx input, line 7; error   : Unknown symbol 'foo'");
  EXPECT_ERROR_WITH(selected(ctx, t, 1, 64), NSAJIT_ERROR_COMPILE_ERROR, "cuModuleLoadDataEx",
                    "CUDA_ERROR_INVALID_PTX (a PTX JIT compilation failed)",
                    "JIT log: ptxas application ptx input, line 7; error   : Unknown symbol 'foo'",
                    "Fake H100");
  fake.fakecuda_set_module_load_error(CUDA_ERROR_UNSUPPORTED_PTX_VERSION, "");
  EXPECT_ERROR_WITH(selected(ctx, t, 1, 64), NSAJIT_ERROR_COMPILE_ERROR, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
                    "driver supports CUDA 13.0", "newer NVIDIA driver");
  fake.fakecuda_set_module_load_error(0, nullptr);
  EXPECT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(compiler.calls, 1); // the PTX was kept; only loading failed
}

TEST_F(FakeGpu, LaunchFailuresAreDriverErrors) {
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  fake.fakecuda_set_launch_result(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES);
  EXPECT_ERROR_WITH(selected(ctx, t, 1, 64), NSAJIT_ERROR_DRIVER_ERROR, "cuLaunchKernel(nsa_selected_fwd",
                    "grid (32, 4, 1)", // 64 tokens, 2 per CTA (the union schedule)
                    "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (too many resources requested for launch)");
  fake.fakecuda_set_launch_result(CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_ERROR_WITH(selected(ctx, t, 1, 64), NSAJIT_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY");
  fake.fakecuda_set_launch_result(0);
  EXPECT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK);
}

TEST_F(FakeGpu, SharedMemoryBeyondTheGpusLimit) {
  // An 8.6-class GPU: 99 KiB opt-in.
  fake.fakecuda_set_device(1, 8, 6, "Fake RTX A6000", 101376, 0);
  nsajit_context *ctx = create();
  cfg.head_dim_qk = 256;
  cfg.head_dim_v = 256;
  cfg.tile_warps = 8;
  cfg.tile_kv_chunk = 64;
  KernelSpec spec = specFromConfig(&cfg, Branch::Window, Arch::SM80);
  ASSERT_GT(sharedMemoryBytes(spec), 101376);
  Tensors t(cfg, Branch::Window, 1, 64);
  EXPECT_ERROR_WITH(nsajit_window_forward(ctx, &cfg, 1, 64, &t.tq, &t.tk, &t.tv, &t.to, &t.tl, nullptr),
                    NSAJIT_ERROR_UNSUPPORTED, "bytes of shared memory per CTA", "'Fake RTX A6000'",
                    "allows at most 101376", "tile_kv_chunk");
  EXPECT_EQ(compiler.calls, 0); // not compiled in vain
}

TEST_F(FakeGpu, RegisterLimitedTilesAreUnsupported) {
  fake.fakecuda_set_max_threads_per_block(16);
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  EXPECT_ERROR_WITH(selected(ctx, t, 1, 64), NSAJIT_ERROR_UNSUPPORTED, "128 registers per thread",
                    "at most 16 threads per CTA", "tile_warps");
}

TEST_F(FakeGpu, ArchitectureFollowsTheGpu) {
  Tensors t(cfg, Branch::Selected, 1, 64);
  struct Case {
    int major, minor;
    Arch arch;
  } cases[] = {{9, 0, Arch::SM90a}, {8, 0, Arch::SM80}, {8, 9, Arch::SM80}, {10, 0, Arch::SM80}, {12, 0, Arch::SM80}};
  for (const Case &c : cases) {
    fake.fakecuda_set_device(1, c.major, c.minor, "Fake GPU", 232448, 0);
    nsajit_context *ctx = create();
    ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK) << nsajit_last_error();
    EXPECT_EQ(compiler.lastSpec.arch, c.arch) << c.major << "." << c.minor;
    EXPECT_TRUE(contains(info(ctx), c.arch == Arch::SM90a ? "kernels: sm_90a" : "kernels: sm_80")) << info(ctx);
  }
  // Too old: the context works (for info) but kernels are unsupported, after argument checks.
  fake.fakecuda_set_device(1, 7, 5, "Fake T4", 65536, 0);
  nsajit_context *old = create();
  EXPECT_TRUE(contains(info(old), "kernels: unsupported")) << info(old);
  EXPECT_ERROR_WITH(selected(old, t, 1, 64), NSAJIT_ERROR_UNSUPPORTED, "'Fake T4'", "7.5", "sm_80", "sm_90a");
  EXPECT_ERROR_WITH(selected(old, t, 0, 64), NSAJIT_ERROR_INVALID_ARGUMENT, "batch = 0");
}

TEST_F(FakeGpu, ForcedArchitecture) {
  Tensors t(cfg, Branch::Selected, 1, 64);
  nsajit_context *h100 = create();
  ASSERT_EQ(nsajit_context_set_arch(h100, 80), NSAJIT_OK);
  ASSERT_EQ(selected(h100, t, 1, 64), NSAJIT_OK);
  EXPECT_EQ(compiler.lastSpec.arch, Arch::SM80);
  EXPECT_TRUE(contains(info(h100), "kernels: sm_80, forced"));
  ASSERT_EQ(nsajit_context_set_arch(h100, 0), NSAJIT_OK);
  ASSERT_EQ(selected(h100, t, 1, 64), NSAJIT_OK);
  EXPECT_EQ(compiler.lastSpec.arch, Arch::SM90a);
  EXPECT_ERROR_WITH(nsajit_context_set_arch(h100, 75), NSAJIT_ERROR_INVALID_ARGUMENT, "arch = 75");

  fake.fakecuda_set_device(1, 8, 0, "Fake A100", 166912, 0);
  nsajit_context *a100 = create();
  EXPECT_ERROR_WITH(nsajit_context_set_arch(a100, 90), NSAJIT_ERROR_UNSUPPORTED, "sm_90a",
                    "compute capability 9.0", "'Fake A100' is 8.0");
}

TEST_F(FakeGpu, CompileAndQueryThroughAContext) {
  nsajit_context *ctx = create();
  const char *ptx = nullptr;
  ASSERT_EQ(nsajit_compile(ctx, &cfg, NSAJIT_BRANCH_WINDOW, &ptx), NSAJIT_OK) << nsajit_last_error();
  ASSERT_NE(ptx, nullptr);
  KernelSpec spec = specFromConfig(&cfg, Branch::Window, Arch::SM90a);
  EXPECT_EQ(std::string(ptx), fakePtx(spec));
  const char *again = nullptr;
  ASSERT_EQ(nsajit_compile(ctx, &cfg, NSAJIT_BRANCH_WINDOW, &again), NSAJIT_OK);
  EXPECT_EQ(again, ptx); // owned by the context, stable
  EXPECT_EQ(compiler.calls, 1);
  EXPECT_EQ(nsajit_compile(ctx, &cfg, NSAJIT_BRANCH_WINDOW, nullptr), NSAJIT_ERROR_INVALID_ARGUMENT);

  nsajit_kernel_info info{};
  info.struct_size = sizeof info;
  ASSERT_EQ(nsajit_kernel_query(ctx, &cfg, NSAJIT_BRANCH_WINDOW, 80 /* ignored with a ctx */, &info), NSAJIT_OK)
      << nsajit_last_error();
  EXPECT_EQ(info.arch, 90);
  EXPECT_EQ(info.num_regs, 128);
  EXPECT_EQ(info.local_bytes, 0);
  EXPECT_STREQ(info.kernel_name, "nsa_window_fwd");
  EXPECT_EQ(compiler.calls, 1);
}

TEST_F(FakeGpu, CheckIndices) {
  nsajit_context *ctx = create();
  cfg.num_kv_heads = 2;
  cfg.slc_count = 3;
  const int B = 2, T = 130;
  std::vector<std::int32_t> idx(std::size_t(B) * T * 2 * 3, -1);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < 2; ++h) {
        std::int32_t *row = &idx[((std::size_t(b) * T + t) * 2 + h) * 3];
        row[0] = 0;
        row[1] = t / 64; // the block holding t: valid
      }
  FakeBuffer buf(idx.size() * 4);
  ASSERT_EQ(fake.memcpyHtoD(buf.ptr(), idx.data(), idx.size() * 4), CUDA_SUCCESS);
  nsajit_tensor view{buf.ptr(), T * 2 * 3, 2 * 3, 3};
  EXPECT_EQ(nsajit_check_indices(ctx, &cfg, B, T, &view, nullptr), NSAJIT_OK) << nsajit_last_error();

  auto at = [&](int b, int t, int h, int i) -> std::int32_t & { return idx[((std::size_t(b) * T + t) * 2 + h) * 3 + i]; };
  at(1, 70, 1, 2) = 2; // block 2 starts at 128 > 70
  ASSERT_EQ(fake.memcpyHtoD(buf.ptr(), idx.data(), idx.size() * 4), CUDA_SUCCESS);
  EXPECT_ERROR_WITH(nsajit_check_indices(ctx, &cfg, B, T, &view, nullptr), NSAJIT_ERROR_INVALID_ARGUMENT,
                    "indices[b=1, t=70, h=1, 2] = 2", "block 2 starts at token 128 > t",
                    "allowed: -1 (no block) or a block j >= 0 with j * l' <= t (l' = 64)");
  at(0, 5, 0, 1) = -3; // earlier in memory order: reported first
  ASSERT_EQ(fake.memcpyHtoD(buf.ptr(), idx.data(), idx.size() * 4), CUDA_SUCCESS);
  EXPECT_ERROR_WITH(nsajit_check_indices(ctx, &cfg, B, T, &view, nullptr), NSAJIT_ERROR_INVALID_ARGUMENT,
                    "indices[b=0, t=5, h=0, 1] = -3: negative");
  // The view itself is checked like a kernel argument.
  view.data += 2;
  EXPECT_ERROR_WITH(nsajit_check_indices(ctx, &cfg, B, T, &view, nullptr), NSAJIT_ERROR_INVALID_ARGUMENT,
                    "indices.data", "4-byte aligned");
  view.data -= 2;
  EXPECT_ERROR_WITH(nsajit_check_indices(ctx, &cfg, B, T + 5, &view, nullptr), NSAJIT_ERROR_INVALID_ARGUMENT,
                    "indices needs");
}

TEST_F(FakeGpu, ProcessStatisticsAddUpContexts) {
  nsajit_cache_counters before = stats(nullptr);
  nsajit_context *ctx = create();
  Tensors t(cfg, Branch::Selected, 1, 64);
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK);
  ASSERT_EQ(selected(ctx, t, 1, 64), NSAJIT_OK);
  nsajit_cache_counters after = stats(nullptr);
  EXPECT_EQ(after.compiles - before.compiles, 1u);
  EXPECT_EQ(after.kernel_hits - before.kernel_hits, 1u);
  EXPECT_EQ(after.modules_loaded - before.modules_loaded, 1u);
}

// The autotuner against the fake driver, whose "timings" are the launch's shared
// memory in KiB: the tile with the least shared memory must win, be recorded in the
// database file, and be used by later launches with default tiles.
TEST_F(FakeGpu, TuneRecordsTheFastestTileAndLaunchesUseIt) {
  fake.fakecuda_set_elapsed_from_shared(1);
  nsajit_context *ctx = create();
  const int B = 1, T = 256;
  std::vector<std::pair<int, std::string>> progress;
  auto onProgress = [](int done, int total, const char *tile, double ms, void *user) {
    auto *p = static_cast<std::vector<std::pair<int, std::string>> *>(user);
    p->push_back({done, tile});
    EXPECT_LE(done, total);
    EXPECT_GT(ms, 0.0);
  };
  nsajit_tune_result r{};
  r.struct_size = sizeof r;
  ASSERT_EQ(nsajit_tune(ctx, &cfg, NSAJIT_BRANCH_SELECTED, B, T, 3, onProgress, &progress, &r), NSAJIT_OK)
      << nsajit_last_error();
  const KernelSpec defaults = specFromConfig(&cfg, Branch::Selected, Arch::SM90a);
  KernelSpec best = defaults;
  best.tile = {r.tile_warps, r.tile_tokens, r.tile_kv_chunk};
  EXPECT_EQ(r.default_kv_chunk, defaults.tile.kvChunk);
  // The selected branch is timed on random and on local indices: the sum of both.
  EXPECT_EQ(r.default_ms, 2 * sharedMemoryBytes(defaults) / 1024.0);
  EXPECT_EQ(r.tile_kv_chunk, 16); // the smallest chunk needs the least shared memory
  EXPECT_EQ(r.best_ms, 2 * sharedMemoryBytes(best) / 1024.0);
  EXPECT_EQ(r.failed, 0);
  ASSERT_EQ(static_cast<int>(progress.size()), r.candidates);
  EXPECT_EQ(progress.back().first, r.candidates);
  EXPECT_EQ(progress.front().second, fmt::format("w{} t{} c{}", defaults.tile.warps, defaults.tile.tokensPerCta,
                                                 defaults.tile.kvChunk));
  // The database file names the GPU and holds the entry.
  std::string db = r.database;
  EXPECT_NE(db.find(cacheDir.path() + "/tuning/Fake_H100"), std::string::npos) << db;
  std::ifstream in(db);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(TuningDb::parse(text, nullptr).size(), 1u) << text;

  // A launch with default tiles now uses the tuned tile; an explicit tile is kept.
  Tensors t(cfg, Branch::Selected, B, T);
  ASSERT_EQ(selected(ctx, t, B, T), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(fake.lastLaunch().shared, unsigned(sharedMemoryBytes(best)));
  int32_t w = 0, tok = 0, chunk = 0;
  int tuned = 0;
  ASSERT_EQ(nsajit_tuned_tile(ctx, &cfg, NSAJIT_BRANCH_SELECTED, B, T, &w, &tok, &chunk, &tuned), NSAJIT_OK);
  EXPECT_EQ(tuned, 1);
  EXPECT_EQ(chunk, 16);
  nsajit_config explicitTile = cfg;
  explicitTile.tile_kv_chunk = 64;
  ASSERT_EQ(nsajit_selected_forward(ctx, &explicitTile, B, T, &t.tq, &t.tk, &t.tv, &t.ti, &t.to, &t.tl, nullptr),
            NSAJIT_OK);
  KernelSpec chunk64 = defaults;
  chunk64.tile.kvChunk = 64;
  EXPECT_EQ(fake.lastLaunch().shared, unsigned(sharedMemoryBytes(chunk64)));

  // A new context (a new process) reads the database; NSAJIT_TUNING=off ignores it.
  nsajit_context *again = create();
  ASSERT_EQ(selected(again, t, B, T), NSAJIT_OK);
  EXPECT_EQ(fake.lastLaunch().shared, unsigned(sharedMemoryBytes(best)));
  {
    ScopedEnv off("NSAJIT_TUNING", "off");
    nsajit_context *ignoring = create();
    ASSERT_EQ(selected(ignoring, t, B, T), NSAJIT_OK);
    EXPECT_EQ(fake.lastLaunch().shared, unsigned(sharedMemoryBytes(defaults)));
    ASSERT_EQ(nsajit_tuned_tile(ignoring, &cfg, NSAJIT_BRANCH_SELECTED, B, T, &w, &tok, &chunk, &tuned), NSAJIT_OK);
    EXPECT_EQ(tuned, 0);
    EXPECT_EQ(chunk, defaults.tile.kvChunk);
  }
}

TEST_F(FakeGpu, TuneBackwardRejectsBadRequests) {
  nsajit_context *ctx = create();
  nsajit_tune_backward_result r{};
  r.struct_size = sizeof r;
  EXPECT_ERROR_WITH(nsajit_tune_backward(nullptr, &cfg, NSAJIT_BRANCH_WINDOW, 1, 128, 3, nullptr, nullptr, &r),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_ERROR_WITH(nsajit_tune_backward(ctx, &cfg, NSAJIT_BRANCH_WINDOW, 1, 0, 3, nullptr, nullptr, &r),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "seq_len = 0");
  EXPECT_ERROR_WITH(nsajit_tune_backward(ctx, &cfg, NSAJIT_BRANCH_WINDOW, 1, 128, 0, nullptr, nullptr, &r),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "repeats = 0");
  EXPECT_ERROR_WITH(nsajit_tune_backward(ctx, &cfg, NSAJIT_BRANCH_COMPRESSED, 1, 16, 3, nullptr, nullptr, &r),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "shorter than the compressed block");
  EXPECT_ERROR_WITH(nsajit_tune_backward(ctx, &cfg, NSAJIT_BRANCH_WINDOW, 1, 128, 3, nullptr, nullptr, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "result is NULL");
  r.struct_size = 8;
  EXPECT_ERROR_WITH(nsajit_tune_backward(ctx, &cfg, NSAJIT_BRANCH_WINDOW, 1, 128, 3, nullptr, nullptr, &r),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "struct_size = 8");
  int32_t split = 0;
  EXPECT_ERROR_WITH(nsajit_tuned_backward_split(ctx, &cfg, NSAJIT_BRANCH_WINDOW, 1, 128, &split, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "must not be NULL");
  EXPECT_EQ(fake.launches().size(), 0u); // nothing launched
}

TEST_F(FakeGpu, TuneRejectsBadRequests) {
  nsajit_context *ctx = create();
  nsajit_tune_result r{};
  r.struct_size = sizeof r;
  EXPECT_ERROR_WITH(nsajit_tune(nullptr, &cfg, NSAJIT_BRANCH_WINDOW, 1, 128, 3, nullptr, nullptr, &r),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_ERROR_WITH(nsajit_tune(ctx, &cfg, NSAJIT_BRANCH_WINDOW, 1, 0, 3, nullptr, nullptr, &r),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "seq_len = 0");
  EXPECT_ERROR_WITH(nsajit_tune(ctx, &cfg, NSAJIT_BRANCH_WINDOW, 1, 128, 0, nullptr, nullptr, &r),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "repeats = 0");
  EXPECT_ERROR_WITH(nsajit_tune(ctx, &cfg, NSAJIT_BRANCH_COMPRESSED, 1, 16, 3, nullptr, nullptr, &r),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "shorter than the compressed block");
  nsajit_tune_result small{};
  small.struct_size = 8;
  EXPECT_ERROR_WITH(nsajit_tune(ctx, &cfg, NSAJIT_BRANCH_WINDOW, 1, 128, 3, nullptr, nullptr, &small),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "struct_size");
  nsajit_config bad = cfg;
  bad.head_dim_qk = 96;
  EXPECT_ERROR_WITH(nsajit_tune(ctx, &bad, NSAJIT_BRANCH_WINDOW, 1, 128, 3, nullptr, nullptr, &r),
                    NSAJIT_ERROR_UNSUPPORTED, "head_dim_qk");
  EXPECT_EQ(fake.fakecuda_launch_count(), 0);
  EXPECT_EQ(fake.fakecuda_live_allocations(), 0);
}

// nsajit_prepare loads every kernel of a configuration (in parallel), so later calls
// compile nothing; a kernel that cannot be built fails the call after all were tried.
TEST_F(FakeGpu, PrepareLoadsEveryKernelOfAConfiguration) {
  ScopedEnv threads("NSAJIT_COMPILE_THREADS", "4");
  nsajit_context *ctx = create();
  cfg.head_dim_qk = 192; // separate pooling kernels for Dk and Dv
  std::vector<std::string> seen;
  auto onProgress = [](int done, int total, const char *kernel, double seconds, void *user) {
    auto *s = static_cast<std::vector<std::string> *>(user);
    s->push_back(kernel);
    EXPECT_EQ(done, static_cast<int>(s->size()));
    EXPECT_LE(done, total);
    EXPECT_GE(seconds, 0.0);
  };
  int n = 0;
  ASSERT_EQ(nsajit_prepare(ctx, &cfg, NSAJIT_PREPARE_ALL, 1, 4096, onProgress, &seen, &n), NSAJIT_OK)
      << nsajit_last_error();
  // 3 forward + the gated combination (Dv wide) + 3 x 3 backward + the dq sum (the combination,
  // Dk wide) + top-n + pool and pool_bwd for Dk and for Dv.
  EXPECT_EQ(n, 19);
  EXPECT_EQ(static_cast<int>(seen.size()), 19);
  EXPECT_EQ(compiler.calls, 19);
  EXPECT_EQ(fake.fakecuda_module_loads(), 19);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end()) << "a kernel was prepared twice";
  // Every launch now finds its kernel loaded.
  const int B = 1, T = 300;
  Tensors t(cfg, Branch::Selected, B, T);
  ASSERT_EQ(selected(ctx, t, B, T), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(compiler.calls, 19);
  EXPECT_EQ(fake.fakecuda_module_loads(), 19);
  // Again: everything is cached.
  ASSERT_EQ(nsajit_prepare(ctx, &cfg, NSAJIT_PREPARE_FORWARD | NSAJIT_PREPARE_SELECTION, 0, 0, nullptr, nullptr, &n),
            NSAJIT_OK);
  EXPECT_EQ(n, 5);
  EXPECT_EQ(compiler.calls, 19);

  // The weighted pooling kernels, on request: pool, pool_bwd, pool_dw for Dk and for Dv.
  ASSERT_EQ(nsajit_prepare(ctx, &cfg, NSAJIT_PREPARE_WEIGHTED_POOL, 0, 0, nullptr, nullptr, &n), NSAJIT_OK)
      << nsajit_last_error();
  EXPECT_EQ(n, 6);
  EXPECT_EQ(compiler.calls, 25);
  EXPECT_ERROR_WITH(nsajit_prepare(ctx, &cfg, 0, 1, 100, nullptr, nullptr, &n), NSAJIT_ERROR_INVALID_ARGUMENT,
                    "flags");
  EXPECT_ERROR_WITH(nsajit_prepare(ctx, &cfg, 64, 1, 100, nullptr, nullptr, &n), NSAJIT_ERROR_INVALID_ARGUMENT,
                    "flags");
  EXPECT_ERROR_WITH(nsajit_prepare(nullptr, &cfg, NSAJIT_PREPARE_ALL, 1, 100, nullptr, nullptr, &n),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "ctx");
  nsajit_config other = cfg;
  other.window = 77;
  compiler.failWith = "no registers left";
  EXPECT_ERROR_WITH(nsajit_prepare(ctx, &other, NSAJIT_PREPARE_FORWARD, 1, 100, nullptr, nullptr, &n),
                    NSAJIT_ERROR_COMPILE_ERROR, "no registers left", "window");
}
