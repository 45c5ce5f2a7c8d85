// jit_load_timing: how long the CUDA driver takes to turn nsajit's PTX into loaded
// modules, one after the other and from several threads, through cuModuleLoadDataEx
// (what the runtime does) and through cuLinkCreate/AddData/Complete (PTX -> cubin, then
// cuModuleLoadData of the cubin). It answers whether the driver's PTX JIT runs in parallel
// within one process, which bounds the cold compile time of a configuration.
//
//   jit_load_timing [--threads N] [--repeat R] FILE.ptx...
//
// The driver's JIT cache is switched off (CUDA_CACHE_DISABLE=1 before cuInit), so every
// load compiles. Output: one line per kernel and mode, then a summary line per mode.
#include <cuda.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Api {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuCtxCreate)(CUcontext *, unsigned, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuModuleLoadDataEx)(CUmodule *, const void *, unsigned, CUjit_option *, void **);
  CUresult (*cuModuleLoadData)(CUmodule *, const void *);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuLinkCreate)(unsigned, CUjit_option *, void **, CUlinkState *);
  CUresult (*cuLinkAddData)(CUlinkState, CUjitInputType, void *, size_t, const char *, unsigned, CUjit_option *,
                            void **);
  CUresult (*cuLinkComplete)(CUlinkState, void **, size_t *);
  CUresult (*cuLinkDestroy)(CUlinkState);
};

Api api;

template <typename F> void bind(void *lib, F &fn, const char *name, const char *alt = nullptr) {
  void *p = alt ? dlsym(lib, alt) : nullptr;
  if (!p)
    p = dlsym(lib, name);
  if (!p) {
    std::fprintf(stderr, "jit_load_timing: libcuda has no %s\n", name);
    std::exit(2);
  }
  fn = reinterpret_cast<F>(p);
}

void check(CUresult r, const char *what, const std::string &file) {
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "jit_load_timing: %s failed (%d) for %s\n", what, static_cast<int>(r), file.c_str());
    std::exit(1);
  }
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Kernel {
  std::string file, ptx;
};

// PTX -> loaded module as the runtime does it.
double loadModule(const Kernel &k) {
  double t0 = now();
  CUmodule m;
  check(api.cuModuleLoadDataEx(&m, k.ptx.c_str(), 0, nullptr, nullptr), "cuModuleLoadDataEx", k.file);
  double t = now() - t0;
  api.cuModuleUnload(m);
  return t;
}

// PTX -> cubin with the linker API, then load the cubin.
double linkThenLoad(const Kernel &k) {
  double t0 = now();
  CUlinkState st;
  check(api.cuLinkCreate(0, nullptr, nullptr, &st), "cuLinkCreate", k.file);
  check(api.cuLinkAddData(st, CU_JIT_INPUT_PTX, const_cast<char *>(k.ptx.c_str()), k.ptx.size() + 1, "k.ptx", 0,
                          nullptr, nullptr),
        "cuLinkAddData", k.file);
  void *cubin = nullptr;
  size_t size = 0;
  check(api.cuLinkComplete(st, &cubin, &size), "cuLinkComplete", k.file);
  CUmodule m;
  check(api.cuModuleLoadData(&m, cubin), "cuModuleLoadData(cubin)", k.file);
  double t = now() - t0;
  api.cuModuleUnload(m);
  api.cuLinkDestroy(st);
  return t;
}

void runMode(const char *name, double (*fn)(const Kernel &), const std::vector<Kernel> &ks, int threads,
             CUcontext ctx) {
  std::vector<double> per(ks.size(), 0);
  std::atomic<size_t> next{0};
  double t0 = now();
  auto work = [&] {
    api.cuCtxSetCurrent(ctx);
    for (size_t i; (i = next.fetch_add(1)) < ks.size();)
      per[i] = fn(ks[i]);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back(work);
  work();
  for (auto &t : pool)
    t.join();
  double wall = now() - t0, sum = 0, mx = 0;
  for (size_t i = 0; i < ks.size(); ++i) {
    std::printf("  %-12s threads=%-3d %8.3f s  %s\n", name, threads, per[i], ks[i].file.c_str());
    sum += per[i];
    mx = per[i] > mx ? per[i] : mx;
  }
  std::printf("SUMMARY %-12s threads=%-3d kernels=%zu wall=%.3f s sum=%.3f s max=%.3f s speedup=%.2fx\n", name,
              threads, ks.size(), wall, sum, mx, sum / wall);
  std::fflush(stdout);
}

} // namespace

int main(int argc, char **argv) {
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  std::vector<Kernel> ks;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
      continue;
    }
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "jit_load_timing: cannot read %s\n", argv[i]);
      return 2;
    }
    std::stringstream s;
    s << in.rdbuf();
    ks.push_back({argv[i], s.str()});
  }
  if (ks.empty() || threads < 1) {
    std::fprintf(stderr, "usage: jit_load_timing [--threads N] FILE.ptx...\n");
    return 2;
  }
  setenv("CUDA_CACHE_DISABLE", "1", 1);
  void *lib = dlopen("libcuda.so.1", RTLD_NOW);
  if (!lib) {
    std::fprintf(stderr, "jit_load_timing: no libcuda.so.1: %s\n", dlerror());
    return 2;
  }
  bind(lib, api.cuInit, "cuInit");
  bind(lib, api.cuDeviceGet, "cuDeviceGet");
  bind(lib, api.cuCtxCreate, "cuCtxCreate_v2");
  bind(lib, api.cuCtxSetCurrent, "cuCtxSetCurrent");
  bind(lib, api.cuModuleLoadDataEx, "cuModuleLoadDataEx");
  bind(lib, api.cuModuleLoadData, "cuModuleLoadData");
  bind(lib, api.cuModuleUnload, "cuModuleUnload");
  bind(lib, api.cuLinkCreate, "cuLinkCreate_v2");
  bind(lib, api.cuLinkAddData, "cuLinkAddData_v2");
  bind(lib, api.cuLinkComplete, "cuLinkComplete");
  bind(lib, api.cuLinkDestroy, "cuLinkDestroy");
  CUdevice dev;
  CUcontext ctx;
  check(api.cuInit(0), "cuInit", "");
  check(api.cuDeviceGet(&dev, 0), "cuDeviceGet", "");
  check(api.cuCtxCreate(&ctx, 0, dev), "cuCtxCreate", "");
  loadModule(ks[0]); // the JIT's own start-up, outside the timings
  runMode("load", loadModule, ks, 1, ctx);
  runMode("load", loadModule, ks, threads, ctx);
  runMode("link+load", linkThenLoad, ks, 1, ctx);
  runMode("link+load", linkThenLoad, ks, threads, ctx);
  return 0;
}
