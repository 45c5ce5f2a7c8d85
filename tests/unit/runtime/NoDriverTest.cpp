// The C API on a machine without an NVIDIA driver (this one): contexts fail
// with NSAJIT_ERROR_NO_DEVICE and a message about libcuda; everything that
// needs no GPU (argument errors, configs, versions, offline PTX) still works.
#include "TestUtil.h"
#include "Validate.h"

#include "nsajit/nsajit.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>

using namespace nsajit;
using namespace nsajit::rt;
using namespace nsajit::rt::test;

namespace {

bool contains(const char *haystack, const char *needle) { return std::strstr(haystack, needle) != nullptr; }

class NoDriver : public ::testing::Test {
protected:
  TempDir cacheDir;
  RecordingCompiler compiler;
  void SetUp() override {
    CudaDriver::resetForTesting("/nonexistent/libcuda.so.1");
    DiskCache::setGlobalForTesting(std::make_shared<DiskCache>(cacheDir.path()));
    PtxCache::global().resetForTesting(compiler.fn());
  }
  void TearDown() override {
    PtxCache::global().resetForTesting(nullptr);
    DiskCache::setGlobalForTesting(std::make_shared<DiskCache>("", "unit tests"));
    CudaDriver::resetForTesting("");
  }
};

} // namespace

TEST_F(NoDriver, ContextCreationReportsNoDevice) {
  nsajit_context *ctx = reinterpret_cast<nsajit_context *>(0x1);
  EXPECT_EQ(nsajit_context_create(&ctx, 0), NSAJIT_ERROR_NO_DEVICE);
  EXPECT_EQ(ctx, nullptr);
  EXPECT_TRUE(contains(nsajit_last_error(), "libcuda")) << nsajit_last_error();
  EXPECT_TRUE(contains(nsajit_last_error(), "no NVIDIA driver")) << nsajit_last_error();
  EXPECT_TRUE(contains(nsajit_last_error(), "dlerror")) << nsajit_last_error();
  // The failure is remembered, not retried differently.
  EXPECT_EQ(nsajit_context_create(&ctx, -1), NSAJIT_ERROR_NO_DEVICE);
  EXPECT_TRUE(contains(nsajit_last_error(), "libcuda")) << nsajit_last_error();
}

TEST_F(NoDriver, DefaultDriverPathOnThisMachine) {
  ScopedEnv env("NSAJIT_LIBCUDA", nullptr);
  CudaDriver::resetForTesting("");
  if (void *h = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) {
    ::dlclose(h);
    GTEST_SKIP() << "an NVIDIA driver (libcuda.so.1) is installed here; this test is for machines without one";
  }
  nsajit_context *ctx = nullptr;
  EXPECT_EQ(nsajit_context_create(&ctx, 0), NSAJIT_ERROR_NO_DEVICE);
  EXPECT_EQ(ctx, nullptr);
  EXPECT_TRUE(contains(nsajit_last_error(), "libcuda.so.1 not found: no NVIDIA driver on this machine (dlerror: "))
      << nsajit_last_error();
}

TEST_F(NoDriver, DriverPathFromTheEnvironment) {
  ScopedEnv env("NSAJIT_LIBCUDA", "/nonexistent/dir/libcuda-custom.so");
  CudaDriver::resetForTesting("");
  nsajit_context *ctx = nullptr;
  EXPECT_EQ(nsajit_context_create(&ctx, 0), NSAJIT_ERROR_NO_DEVICE);
  EXPECT_TRUE(contains(nsajit_last_error(), "/nonexistent/dir/libcuda-custom.so (from NSAJIT_LIBCUDA)"))
      << nsajit_last_error();
}

TEST_F(NoDriver, NullArguments) {
  EXPECT_EQ(nsajit_context_create(nullptr, 0), NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(nsajit_last_error(), "out is NULL")) << nsajit_last_error();
  EXPECT_EQ(nsajit_config_init(nullptr), NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(nsajit_last_error(), "config is NULL")) << nsajit_last_error();
  EXPECT_EQ(nsajit_context_destroy(nullptr), NSAJIT_OK); // like free(NULL)

  nsajit_config cfg;
  ASSERT_EQ(nsajit_config_init(&cfg), NSAJIT_OK);
  nsajit_tensor t{0x1000, 0, 0, 0};
  const char *ptx = nullptr;
  char buf[64];
  struct Call {
    const char *what;
    nsajit_status status;
  } calls[] = {
      {"compressed_forward", nsajit_compressed_forward(nullptr, &cfg, 1, 1, &t, &t, &t, &t, &t, nullptr)},
      {"selected_forward", nsajit_selected_forward(nullptr, &cfg, 1, 1, &t, &t, &t, &t, &t, &t, nullptr)},
      {"window_forward", nsajit_window_forward(nullptr, &cfg, 1, 1, &t, &t, &t, &t, &t, nullptr)},
      {"check_indices", nsajit_check_indices(nullptr, &cfg, 1, 1, &t, nullptr)},
      {"compile", nsajit_compile(nullptr, &cfg, NSAJIT_BRANCH_SELECTED, &ptx)},
      {"device_info", nsajit_device_info(nullptr, buf, sizeof buf)},
      {"context_set_arch", nsajit_context_set_arch(nullptr, 80)},
  };
  for (const Call &c : calls)
    EXPECT_EQ(c.status, NSAJIT_ERROR_INVALID_ARGUMENT) << c.what;
  EXPECT_TRUE(contains(nsajit_last_error(), "ctx is NULL")) << nsajit_last_error();
}

TEST_F(NoDriver, ConfigInitFillsThePapersDefaults) {
  nsajit_config cfg;
  std::memset(&cfg, 0x5a, sizeof cfg);
  ASSERT_EQ(nsajit_config_init(&cfg), NSAJIT_OK);
  EXPECT_EQ(cfg.struct_size, sizeof(nsajit_config));
  EXPECT_EQ(cfg.dtype, NSAJIT_DTYPE_BF16);
  EXPECT_EQ(cfg.head_dim_qk, 128);
  EXPECT_EQ(cfg.head_dim_v, 128);
  EXPECT_EQ(cfg.num_kv_heads, 4);
  EXPECT_EQ(cfg.group, 16);
  EXPECT_EQ(cfg.cmp_block, 32);
  EXPECT_EQ(cfg.cmp_stride, 16);
  EXPECT_EQ(cfg.slc_block, 64);
  EXPECT_EQ(cfg.slc_count, 16);
  EXPECT_EQ(cfg.window, 512);
  EXPECT_EQ(cfg.scale, 0.0f);
  EXPECT_EQ(cfg.tile_warps, 0);
  EXPECT_EQ(cfg.tile_tokens, 0);
  EXPECT_EQ(cfg.tile_kv_chunk, 0);
}

TEST_F(NoDriver, LastErrorIsThreadLocalAndClearedOnSuccess) {
  EXPECT_EQ(nsajit_config_init(nullptr), NSAJIT_ERROR_INVALID_ARGUMENT);
  std::string mine = nsajit_last_error();
  EXPECT_FALSE(mine.empty());
  std::string other = "unset";
  std::thread([&] { other = nsajit_last_error(); }).join();
  EXPECT_EQ(other, "");
  std::thread([&] { nsajit_context_create(nullptr, 0); }).join();
  EXPECT_EQ(std::string(nsajit_last_error()), mine);
  nsajit_config cfg;
  EXPECT_EQ(nsajit_config_init(&cfg), NSAJIT_OK);
  EXPECT_STREQ(nsajit_last_error(), "");
}

TEST_F(NoDriver, StatusStringsAndVersions) {
  EXPECT_STREQ(nsajit_status_string(NSAJIT_OK), "NSAJIT_OK");
  EXPECT_STREQ(nsajit_status_string(NSAJIT_ERROR_INVALID_ARGUMENT), "NSAJIT_ERROR_INVALID_ARGUMENT");
  EXPECT_STREQ(nsajit_status_string(NSAJIT_ERROR_UNSUPPORTED), "NSAJIT_ERROR_UNSUPPORTED");
  EXPECT_STREQ(nsajit_status_string(NSAJIT_ERROR_NO_DEVICE), "NSAJIT_ERROR_NO_DEVICE");
  EXPECT_STREQ(nsajit_status_string(NSAJIT_ERROR_DRIVER_ERROR), "NSAJIT_ERROR_DRIVER_ERROR");
  EXPECT_STREQ(nsajit_status_string(NSAJIT_ERROR_COMPILE_ERROR), "NSAJIT_ERROR_COMPILE_ERROR");
  EXPECT_STREQ(nsajit_status_string(NSAJIT_ERROR_OUT_OF_MEMORY), "NSAJIT_ERROR_OUT_OF_MEMORY");
  EXPECT_STREQ(nsajit_status_string(NSAJIT_ERROR_INTERNAL), "NSAJIT_ERROR_INTERNAL");
  EXPECT_STREQ(nsajit_status_string(static_cast<nsajit_status>(42)), "NSAJIT_STATUS_UNKNOWN");
  EXPECT_STREQ(nsajit_version(), NSAJIT_VERSION_STRING);
  EXPECT_EQ(nsajit_abi_version(), static_cast<uint32_t>(NSAJIT_ABI_VERSION));
  EXPECT_EQ(std::string(nsajit_compiler_version()), compilerVersionString());
  EXPECT_NE(std::string(nsajit_compiler_version()).find("nsajit"), std::string::npos);
}

TEST_F(NoDriver, OfflinePtxWithTheSizeQueryProtocol) {
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  size_t len = 0;
  ASSERT_EQ(nsajit_compile_ptx(&cfg, NSAJIT_BRANCH_WINDOW, 80, nullptr, 0, &len), NSAJIT_OK) << nsajit_last_error();
  ASSERT_EQ(compiler.calls, 1);
  EXPECT_EQ(compiler.lastSpec.arch, Arch::SM80);
  EXPECT_EQ(compiler.lastSpec.branch, Branch::Window);
  const std::string expect = fakePtx(compiler.lastSpec);
  EXPECT_EQ(len, expect.size());
  std::string buf(len + 1, 'x');
  ASSERT_EQ(nsajit_compile_ptx(&cfg, NSAJIT_BRANCH_WINDOW, 80, buf.data(), buf.size(), &len), NSAJIT_OK);
  EXPECT_EQ(std::string(buf.c_str()), expect);
  EXPECT_EQ(compiler.calls, 1); // the second call came from the memory cache
  // Too small: an error, with the truncated text NUL-terminated.
  char small[16];
  EXPECT_EQ(nsajit_compile_ptx(&cfg, NSAJIT_BRANCH_WINDOW, 80, small, sizeof small, &len),
            NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(nsajit_last_error(), "too small")) << nsajit_last_error();
  EXPECT_EQ(std::strlen(small), sizeof small - 1);
  // Bad arch and branch.
  EXPECT_EQ(nsajit_compile_ptx(&cfg, NSAJIT_BRANCH_WINDOW, 86, nullptr, 0, &len), NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(nsajit_last_error(), "arch = 86")) << nsajit_last_error();
  EXPECT_EQ(nsajit_compile_ptx(&cfg, static_cast<nsajit_branch>(9), 90, nullptr, 0, &len),
            NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(nsajit_last_error(), "branch = 9")) << nsajit_last_error();
  // Compiler failures are COMPILE_ERROR with the compiler's message and the spec.
  compiler.failWith = "lowering failed: no template for this tile";
  cfg.window = 64;
  EXPECT_EQ(nsajit_compile_ptx(&cfg, NSAJIT_BRANCH_WINDOW, 90, nullptr, 0, &len), NSAJIT_ERROR_COMPILE_ERROR);
  EXPECT_TRUE(contains(nsajit_last_error(), "lowering failed: no template for this tile")) << nsajit_last_error();
  EXPECT_TRUE(contains(nsajit_last_error(), "window fwd bf16 sm_90a")) << nsajit_last_error();
}

TEST_F(NoDriver, KernelQueryWithoutAContext) {
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  nsajit_kernel_info info{};
  info.struct_size = sizeof info;
  ASSERT_EQ(nsajit_kernel_query(nullptr, &cfg, NSAJIT_BRANCH_COMPRESSED, 90, &info), NSAJIT_OK)
      << nsajit_last_error();
  KernelSpec spec = specFromConfig(&cfg, Branch::Compressed, Arch::SM90a);
  EXPECT_EQ(info.arch, 90);
  EXPECT_EQ(info.threads_per_cta, threadsPerCta(spec));
  EXPECT_EQ(info.shared_memory_bytes, sharedMemoryBytes(spec));
  EXPECT_EQ(info.tile_warps, spec.tile.warps);
  EXPECT_EQ(info.tile_tokens, spec.tile.tokensPerCta);
  EXPECT_EQ(info.tile_kv_chunk, spec.tile.kvChunk);
  EXPECT_EQ(info.num_regs, -1);
  EXPECT_EQ(info.local_bytes, -1);
  EXPECT_STREQ(info.kernel_name, "nsa_compressed_fwd");
  EXPECT_EQ(std::string(info.spec), spec.str());
  EXPECT_EQ(compiler.calls, 0); // resources need no compile

  info.struct_size = 4;
  EXPECT_EQ(nsajit_kernel_query(nullptr, &cfg, NSAJIT_BRANCH_COMPRESSED, 90, &info), NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(nsajit_last_error(), "struct_size")) << nsajit_last_error();
  info.struct_size = sizeof info;
  cfg.head_dim_qk = 96;
  EXPECT_EQ(nsajit_kernel_query(nullptr, &cfg, NSAJIT_BRANCH_COMPRESSED, 90, &info), NSAJIT_ERROR_UNSUPPORTED);
  EXPECT_TRUE(contains(nsajit_last_error(), "head_dim_qk (Dk) = 96")) << nsajit_last_error();
}

TEST_F(NoDriver, CacheStatsAndInfo) {
  nsajit_cache_counters s{};
  s.struct_size = sizeof s;
  ASSERT_EQ(nsajit_cache_stats(nullptr, &s), NSAJIT_OK);
  EXPECT_EQ(s.struct_size, sizeof s);
  // An older, shorter struct gets only the fields it has.
  struct Older {
    uint32_t struct_size;
    uint64_t kernel_hits;
    uint64_t canary;
  } older{};
  older.struct_size = offsetof(nsajit_cache_counters, ptx_memory_hits);
  older.canary = 0xdeadbeef;
  ASSERT_EQ(nsajit_cache_stats(nullptr, reinterpret_cast<nsajit_cache_counters *>(&older)), NSAJIT_OK);
  EXPECT_EQ(older.canary, 0xdeadbeefu);
  s.struct_size = 0;
  EXPECT_EQ(nsajit_cache_stats(nullptr, &s), NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(nsajit_cache_stats(nullptr, nullptr), NSAJIT_ERROR_INVALID_ARGUMENT);

  char buf[512];
  ASSERT_EQ(nsajit_cache_info(buf, sizeof buf), NSAJIT_OK);
  EXPECT_EQ(std::string(buf), "disk cache: " + cacheDir.path() + " (read-write); machine code: the driver's JIT (no ptxas)");
  EXPECT_EQ(nsajit_cache_info(buf, 4), NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(buf, "dis");
  EXPECT_EQ(nsajit_cache_info(nullptr, 0), NSAJIT_ERROR_INVALID_ARGUMENT);
}

TEST_F(NoDriver, RealCompilerProducesPtxThroughTheCApi) {
  if (!haveCompiler())
    GTEST_SKIP() << "built without the nsajit_compiler target";
  PtxCache::global().resetForTesting(nullptr); // the real compileKernel
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  cfg.num_kv_heads = 1;
  cfg.group = 4;
  cfg.slc_count = 4;
  size_t len = 0;
  nsajit_status st = nsajit_compile_ptx(&cfg, NSAJIT_BRANCH_SELECTED, 90, nullptr, 0, &len);
  ASSERT_EQ(st, NSAJIT_OK) << nsajit_last_error();
  std::string ptx(len + 1, '\0');
  ASSERT_EQ(nsajit_compile_ptx(&cfg, NSAJIT_BRANCH_SELECTED, 90, ptx.data(), ptx.size(), &len), NSAJIT_OK);
  ptx.resize(len);
  EXPECT_NE(ptx.find(".entry nsa_selected_fwd"), std::string::npos);
  EXPECT_NE(ptx.find("sm_90a"), std::string::npos);
  // It was written to the disk cache under its key.
  KernelSpec spec = specFromConfig(&cfg, Branch::Selected, Arch::SM90a);
  EXPECT_EQ(DiskCache::global()->load(cacheKey(spec, "offline")).value_or(""), ptx);
}

// Compiles run in parallel (each with its own MLIR and LLVM contexts): the PTX of
// kernels compiled at once on several threads equals the PTX compiled one by one.
TEST_F(NoDriver, ParallelCompilesEqualSequentialOnes) {
  if (!haveCompiler())
    GTEST_SKIP() << "built without the nsajit_compiler target";
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  cfg.num_kv_heads = 1;
  cfg.group = 4;
  cfg.head_dim_qk = cfg.head_dim_v = 64;
  struct Job {
    int branch, pass;
  };
  const std::vector<Job> jobs = {{0, 0}, {1, 0}, {2, 0}, {0, 4}, {1, 2}, {2, 3}};
  auto compileAll = [&](bool parallel) {
    PtxCache::global().resetForTesting(nullptr); // forget the PTX, the real compiler
    std::vector<std::string> out(jobs.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      auto one = [&, i] {
        size_t len = 0;
        auto branch = static_cast<nsajit_branch>(jobs[i].branch);
        auto pass = static_cast<nsajit_kernel_pass>(jobs[i].pass);
        ASSERT_EQ(nsajit_compile_ptx2(&cfg, branch, pass, 90, nullptr, 0, &len), NSAJIT_OK) << nsajit_last_error();
        out[i].resize(len + 1);
        ASSERT_EQ(nsajit_compile_ptx2(&cfg, branch, pass, 90, out[i].data(), out[i].size(), &len), NSAJIT_OK);
        out[i].resize(len);
      };
      if (parallel)
        threads.emplace_back(one);
      else
        one();
    }
    for (std::thread &t : threads)
      t.join();
    return out;
  };
  ScopedEnv threads("NSAJIT_COMPILE_THREADS", "6");
  DiskCache::setGlobalForTesting(std::make_shared<DiskCache>("", "compile every time")); // no disk hits
  const std::uint64_t compilesBefore = processCounters().compiles.load();
  std::vector<std::string> sequential = compileAll(false), parallel = compileAll(true);
  EXPECT_EQ(processCounters().compiles.load() - compilesBefore, 2 * jobs.size()) << "every kernel compiled twice";
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_FALSE(sequential[i].empty());
    EXPECT_EQ(sequential[i], parallel[i]) << "kernel " << i << " differs when compiled in parallel";
  }
}
