// Compile-or-load of kernels.
//
// Key = KernelSpec::str() (arch set, tile defaults filled in) + the GPU (name and
// compute capability) + compilerVersion(). PTX lives in a process-wide memory
// cache (PtxCache, shared by all contexts) backed by the disk cache; loaded
// modules live in a KernelCache, one per nsajit_context (= one CUcontext), and
// are unloaded with it.
#pragma once

#include "CudaDriver.h"
#include "DiskCache.h"
#include "Ptxas.h"

#include "nsajit/compiler/KernelSpec.h"
#include "nsajit/nsajit.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace nsajit::rt {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int ccMajor = 0, ccMinor = 0;
  int smCount = 0;
  int sharedPerBlock = 0;      // bytes without opt-in
  int sharedPerBlockOptin = 0; // bytes with cuFuncSetAttribute opt-in
  bool pageableMemoryAccess = false;
};

// sm_90a for compute capability 9.x, sm_80 for 8.x and (PTX being forward
// compatible) for 10.x and newer; throws UNSUPPORTED for older GPUs.
Arch chooseArch(const DeviceInfo &dev);
// "NVIDIA H100 80GB HBM3 cc9.0": the device part of a cache key.
std::string deviceTag(const DeviceInfo &dev);
std::string cacheKey(const KernelSpec &spec, const std::string &deviceTag);

// compilerVersion() of the linked compiler, or a marker when the library was
// built without it.
const std::string &compilerVersionString();
bool haveCompiler();

// Generates PTX for a spec: returns "" and sets `ptx`, or returns an error
// message; may throw Error for a specific status.
using CompileFn = std::function<std::string(const KernelSpec &spec, std::string &ptx)>;
CompileFn defaultCompileFn();

struct CacheCounters {
  std::atomic<std::uint64_t> kernelHits{0}, ptxMemoryHits{0}, diskHits{0}, compiles{0}, modulesLoaded{0},
      diskWrites{0}, diskRejects{0}, machineCodeDiskHits{0}, ptxasRuns{0};
  void fill(nsajit_cache_counters &out) const;
};
CacheCounters &processCounters();

// How many kernels may compile at once (NSAJIT_COMPILE_THREADS, else the hardware threads).
int compileThreads();

class PtxCache {
public:
  static PtxCache &global();
  explicit PtxCache(CompileFn compile);

  // The PTX of `spec` under `key`: from memory, else disk, else compiled (and
  // stored to disk). Counts in `counters` (may be null) and processCounters().
  std::shared_ptr<const std::string> get(const KernelSpec &spec, const std::string &key, CacheCounters *counters);
  // Whether the PTX of `key` is in memory or on disk (read into memory then), without compiling.
  bool warm(const std::string &key);

  // Tests only: replace the compiler (nullptr: the default) and forget all PTX.
  void resetForTesting(CompileFn compile);

private:
  struct Slot {
    std::mutex mutex;
    std::shared_ptr<const std::string> ptx;
  };
  std::shared_ptr<Slot> slotFor(const std::string &key); // created on first use
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Slot>> map_;
  CompileFn compile_;
  // Compiles run in parallel (each has its own MLIR and LLVM contexts), at most
  // compileThreads() at a time (NSAJIT_COMPILE_THREADS, default: the hardware threads).
  std::mutex compileMutex_;
  std::condition_variable compileFreed_;
  int compilesRunning_ = 0;
};

struct LoadedKernel {
  KernelSpec spec;
  std::string key;
  std::shared_ptr<const std::string> ptx;
  CUmodule module = nullptr;
  CUfunction function = nullptr;
  int sharedBytes = 0;
  int threads = 0;
  int numRegs = -1;
  int localBytes = -1;
};

class KernelCache {
public:
  KernelCache(std::shared_ptr<const CudaDriver> driver, CUcontext context, DeviceInfo device,
              PtxCache &ptx = PtxCache::global());
  ~KernelCache(); // unloads every module (makes the context current for that)
  KernelCache(const KernelCache &) = delete;
  KernelCache &operator=(const KernelCache &) = delete;

  // The loaded kernel for `spec` (arch set, tile defaults filled in). Throws Error.
  // The reference stays valid for the lifetime of the cache.
  const LoadedKernel &get(const KernelSpec &spec);

  // Whether `spec` loads without any compile: loaded already, or its machine code is on
  // disk (its PTX, without ptxas). nsajit_prepare loads those on its own thread and
  // compiles the rest on a pool.
  bool warm(const KernelSpec &spec);
  // The PTX of a loaded or loadable kernel (read or generated when its module came from
  // machine code on disk).
  std::shared_ptr<const std::string> ptxOf(const KernelSpec &spec);
  CacheCounters &counters() { return counters_; }
  const DeviceInfo &device() const { return device_; }

private:
  struct Slot {
    std::mutex mutex;
    std::unique_ptr<LoadedKernel> kernel;
  };
  std::unique_ptr<LoadedKernel> load(const KernelSpec &spec, const std::string &key);
  // Machine code from the disk cache, else assembled by ptxas (and stored); null when
  // ptxas fails or its code does not load (the caller then uses the driver's JIT).
  CUmodule loadMachineCode(LoadedKernel &k, const Ptxas &ptxas);
  // cuModuleLoadDataEx of the PTX; throws with the JIT's log.
  void loadThroughDriverJit(LoadedKernel &k);

  std::shared_ptr<const CudaDriver> drv_;
  CUcontext context_;
  DeviceInfo device_;
  std::string deviceTag_;
  PtxCache &ptx_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Slot>> map_;
  CacheCounters counters_;
};

} // namespace nsajit::rt
