#include "KernelCache.h"

#include "Log.h"
#include "Ptxas.h"

#include "nsajit/compiler/Compiler.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdlib>
#include <thread>
#include <vector>

#ifndef NSAJIT_HAVE_COMPILER
#define NSAJIT_HAVE_COMPILER 0
#endif

namespace nsajit::rt {

Arch chooseArch(const DeviceInfo &dev) {
  if (dev.ccMajor == 9)
    return Arch::SM90a;
  if (dev.ccMajor == 8 || dev.ccMajor >= 10)
    return Arch::SM80; // sm_80 PTX is JIT-compiled forward to newer GPUs; sm_90a PTX is not
  fail(NSAJIT_ERROR_UNSUPPORTED,
       "GPU {} '{}' has compute capability {}.{}: nsajit generates kernels for sm_80 (compute capability 8.x, "
       "and 10.x or newer through PTX JIT) and sm_90a (9.0)",
       dev.ordinal, dev.name, dev.ccMajor, dev.ccMinor);
}

std::string deviceTag(const DeviceInfo &dev) { return fmt::format("{} cc{}.{}", dev.name, dev.ccMajor, dev.ccMinor); }

std::string cacheKey(const KernelSpec &spec, const std::string &tag) {
  return fmt::format("{} | gpu={} | {}", spec.str(), tag, compilerVersionString());
}

bool haveCompiler() { return NSAJIT_HAVE_COMPILER != 0; }

const std::string &compilerVersionString() {
  static const std::string v = [] {
#if NSAJIT_HAVE_COMPILER
    return compilerVersion();
#else
    return fmt::format("nsajit {} (built without the kernel compiler)", NSAJIT_VERSION_STRING);
#endif
  }();
  return v;
}

CompileFn defaultCompileFn() {
  return [](const KernelSpec &spec, std::string &ptx) -> std::string {
#if NSAJIT_HAVE_COMPILER
    CompileResult result;
    std::string err = compileKernel(spec, result, CompileOptions{});
    if (!err.empty())
      return err;
    if (!result.kernelName.empty() && result.kernelName != spec.kernelName())
      fail(NSAJIT_ERROR_INTERNAL, "the compiler named the kernel '{}' but the launcher expects '{}' for {}",
           result.kernelName, spec.kernelName(), spec.str());
    ptx = std::move(result.ptx);
    return {};
#else
    (void)ptx;
    fail(NSAJIT_ERROR_UNSUPPORTED,
         "cannot generate the kernel for {}: this libnsajit was built without the kernel compiler (CMake target "
         "nsajit_compiler); only kernels already in the disk cache can be loaded",
         spec.str());
#endif
  };
}

void CacheCounters::fill(nsajit_cache_counters &out) const {
  out.kernel_hits = kernelHits.load();
  out.ptx_memory_hits = ptxMemoryHits.load();
  out.disk_hits = diskHits.load();
  out.compiles = compiles.load();
  out.modules_loaded = modulesLoaded.load();
  out.disk_writes = diskWrites.load();
  out.disk_rejects = diskRejects.load();
  out.machine_code_disk_hits = machineCodeDiskHits.load();
  out.ptxas_runs = ptxasRuns.load();
}

CacheCounters &processCounters() {
  static CacheCounters *c = new CacheCounters();
  return *c;
}

namespace {
void bump(std::atomic<std::uint64_t> CacheCounters::*field, CacheCounters *local) {
  (processCounters().*field).fetch_add(1, std::memory_order_relaxed);
  if (local)
    (local->*field).fetch_add(1, std::memory_order_relaxed);
}
} // namespace

// ---- PtxCache -----------------------------------------------------------------

PtxCache &PtxCache::global() {
  static PtxCache *cache = new PtxCache(defaultCompileFn());
  return *cache;
}

PtxCache::PtxCache(CompileFn compile) : compile_(std::move(compile)) {}

void PtxCache::resetForTesting(CompileFn compile) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::unique_lock<std::mutex> clock(compileMutex_);
  compileFreed_.wait(clock, [&] { return compilesRunning_ == 0; });
  map_.clear();
  compile_ = compile ? std::move(compile) : defaultCompileFn();
}

int compileThreads() {
  if (const char *e = std::getenv("NSAJIT_COMPILE_THREADS")) {
    int n = std::atoi(e);
    if (n >= 1)
      return std::min(n, 256);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

std::shared_ptr<PtxCache::Slot> PtxCache::slotFor(const std::string &key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto &s = map_[key];
  if (!s)
    s = std::make_shared<Slot>();
  return s;
}

bool PtxCache::warm(const std::string &key) {
  std::shared_ptr<Slot> slot = slotFor(key);
  std::lock_guard<std::mutex> slotLock(slot->mutex);
  if (slot->ptx)
    return true;
  if (std::optional<std::string> fromDisk = DiskCache::global()->load(key)) {
    slot->ptx = std::make_shared<const std::string>(std::move(*fromDisk));
    return true;
  }
  return false;
}

std::shared_ptr<const std::string> PtxCache::get(const KernelSpec &spec, const std::string &key,
                                                 CacheCounters *counters) {
  std::shared_ptr<Slot> slot = slotFor(key);
  std::lock_guard<std::mutex> slotLock(slot->mutex); // one producer per key; others wait for it
  if (slot->ptx) {
    bump(&CacheCounters::ptxMemoryHits, counters);
    return slot->ptx;
  }
  std::shared_ptr<DiskCache> disk = DiskCache::global();
  std::uint64_t rejectsBefore = disk->rejects();
  if (std::optional<std::string> fromDisk = disk->load(key)) {
    bump(&CacheCounters::diskHits, counters);
    logInfo(fmt::format("loaded the PTX of {} from {}", spec.str(), disk->pathFor(key)));
    slot->ptx = std::make_shared<const std::string>(std::move(*fromDisk));
    return slot->ptx;
  }
  if (disk->rejects() != rejectsBefore)
    bump(&CacheCounters::diskRejects, counters);

  std::string ptx, err;
  double ms = 0;
  {
    CompileFn compile;
    {
      std::unique_lock<std::mutex> lock(compileMutex_);
      const int limit = compileThreads();
      compileFreed_.wait(lock, [&] { return compilesRunning_ < limit; });
      ++compilesRunning_;
      compile = compile_;
    }
    struct Release {
      PtxCache &c;
      ~Release() {
        {
          std::lock_guard<std::mutex> lock(c.compileMutex_);
          --c.compilesRunning_;
        }
        c.compileFreed_.notify_all();
      }
    } release{*this};
    auto t0 = std::chrono::steady_clock::now();
    try {
      err = compile(spec, ptx);
    } catch (const Error &) {
      throw;
    } catch (const std::bad_alloc &) {
      throw;
    } catch (const std::exception &e) {
      err = fmt::format("the compiler threw: {}", e.what());
    }
    ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  if (!err.empty())
    fail(NSAJIT_ERROR_COMPILE_ERROR, "generating the kernel for {} failed: {}", spec.str(), err);
  if (ptx.empty())
    fail(NSAJIT_ERROR_INTERNAL, "the compiler returned empty PTX for {}", spec.str());
  bump(&CacheCounters::compiles, counters);
  logInfo(fmt::format("compiled {} in {:.0f} ms", spec.str(), ms));
  if (disk->store(key, ptx))
    bump(&CacheCounters::diskWrites, counters);
  slot->ptx = std::make_shared<const std::string>(std::move(ptx));
  return slot->ptx;
}

// ---- KernelCache --------------------------------------------------------------

KernelCache::KernelCache(std::shared_ptr<const CudaDriver> driver, CUcontext context, DeviceInfo device,
                         PtxCache &ptx)
    : drv_(std::move(driver)), context_(context), device_(std::move(device)), deviceTag_(deviceTag(device_)),
      ptx_(ptx) {}

KernelCache::~KernelCache() {
  try {
    ScopedContext scope(*drv_, context_);
    for (auto &[key, slot] : map_)
      if (slot->kernel && slot->kernel->module)
        drv_->cuModuleUnload(slot->kernel->module);
  } catch (...) {
    // The context is gone or the driver is shutting down: nothing left to free.
  }
}

const LoadedKernel &KernelCache::get(const KernelSpec &spec) {
  std::string key = cacheKey(spec, deviceTag_);
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto &s = map_[key];
    if (!s)
      s = std::make_shared<Slot>();
    slot = s;
  }
  std::lock_guard<std::mutex> slotLock(slot->mutex);
  if (slot->kernel) {
    bump(&CacheCounters::kernelHits, &counters_);
    return *slot->kernel;
  }
  slot->kernel = load(spec, key);
  return *slot->kernel;
}

namespace {
// What ptxas assembles for: the GPU's own architecture, with the "a" of sm_90a kernels.
std::string ptxasArch(const KernelSpec &spec, const DeviceInfo &dev) {
  return fmt::format("sm_{}{}{}", dev.ccMajor, dev.ccMinor, spec.arch == Arch::SM90a ? "a" : "");
}

std::string machineCodeKey(const std::string &ptxKey, const Ptxas &ptxas, const std::string &arch) {
  return fmt::format("{} | machine code of {} for {}", ptxKey, ptxas.version(), arch);
}
} // namespace

bool KernelCache::warm(const KernelSpec &spec) {
  std::string key = cacheKey(spec, deviceTag_);
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = map_.find(key);
    if (it != map_.end())
      slot = it->second;
  }
  if (slot) {
    std::unique_lock<std::mutex> slotLock(slot->mutex, std::try_to_lock); // held while another thread loads it
    if (slotLock.owns_lock() && slot->kernel)
      return true;
  }
  std::shared_ptr<const Ptxas> ptxas = Ptxas::get();
  if (!ptxas) // the driver's JIT: its own cache serves PTX it has seen
    return ptx_.warm(key);
  std::shared_ptr<DiskCache> disk = DiskCache::global();
  std::error_code ec;
  return disk->mode() != DiskCache::Mode::Off &&
         std::filesystem::exists(disk->pathFor(machineCodeKey(key, *ptxas, ptxasArch(spec, device_))), ec);
}

std::shared_ptr<const std::string> KernelCache::ptxOf(const KernelSpec &spec) {
  const LoadedKernel &k = get(spec);
  if (k.ptx)
    return k.ptx;
  return ptx_.get(spec, k.key, &counters_);
}

CUmodule KernelCache::loadMachineCode(LoadedKernel &k, const Ptxas &ptxas) {
  const std::string arch = ptxasArch(k.spec, device_);
  const std::string codeKey = machineCodeKey(k.key, ptxas, arch);
  std::shared_ptr<DiskCache> disk = DiskCache::global();
  const std::uint64_t rejectsBefore = disk->rejects();
  CUmodule module = nullptr;
  if (std::optional<std::string> code = disk->load(codeKey)) {
    CUresult r = drv_->cuModuleLoadData(&module, code->data());
    if (r == CUDA_SUCCESS) {
      bump(&CacheCounters::diskHits, &counters_);
      bump(&CacheCounters::machineCodeDiskHits, &counters_);
      logInfo(fmt::format("loaded the machine code of {} from {}", k.spec.str(), disk->pathFor(codeKey)));
      return module;
    }
    logInfo(fmt::format("the cached machine code of {} did not load ({}): assembling it again", k.spec.str(),
                        drv_->errorText(r)));
  } else if (disk->rejects() != rejectsBefore) {
    bump(&CacheCounters::diskRejects, &counters_);
  }

  k.ptx = ptx_.get(k.spec, k.key, &counters_);
  auto t0 = std::chrono::steady_clock::now();
  std::string error;
  std::optional<std::string> code = ptxas.assemble(*k.ptx, arch, error);
  if (!code) {
    logWarningOnce(fmt::format("ptxas failed for {} ({}): using the driver's JIT", k.spec.str(), error));
    return nullptr;
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  bump(&CacheCounters::ptxasRuns, &counters_);
  CUresult r = drv_->cuModuleLoadData(&module, code->data());
  if (r != CUDA_SUCCESS) {
    // e.g. a ptxas newer than the driver: the driver's JIT for this kernel and the rest
    ptxas.disable(fmt::format("the machine code {} made for {} does not load on driver {} ({})", ptxas.path(),
                              k.spec.str(), drv_->driverVersion(), drv_->errorText(r)));
    return nullptr;
  }
  logInfo(fmt::format("assembled {} with ptxas in {:.0f} ms", k.spec.str(), ms));
  if (disk->store(codeKey, *code)) // only machine code that loaded
    bump(&CacheCounters::diskWrites, &counters_);
  return module;
}

void KernelCache::loadThroughDriverJit(LoadedKernel &k) {
  if (!k.ptx)
    k.ptx = ptx_.get(k.spec, k.key, &counters_);
  std::vector<char> errorLog(32 * 1024, '\0');
  CUjit_option options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {errorLog.data(), reinterpret_cast<void *>(static_cast<std::uintptr_t>(errorLog.size()))};
  CUresult r = drv_->cuModuleLoadDataEx(&k.module, k.ptx->c_str(), 2, options, values);
  if (r == CUDA_SUCCESS)
    return;
  k.module = nullptr;
  errorLog.back() = '\0';
  std::string log = errorLog.data();
  while (!log.empty() && (log.back() == '\n' || log.back() == ' '))
    log.pop_back();
  std::string hint;
  if (r == CUDA_ERROR_UNSUPPORTED_PTX_VERSION)
    hint = fmt::format(" (the driver supports CUDA {}.{}; the PTX needs a newer NVIDIA driver)",
                       drv_->driverVersion() / 1000, drv_->driverVersion() % 1000 / 10);
  nsajit_status st = CudaDriver::statusFor(r);
  if (st == NSAJIT_ERROR_DRIVER_ERROR)
    st = NSAJIT_ERROR_COMPILE_ERROR;
  fail(st, "cuModuleLoadDataEx failed for the PTX of {} on GPU {} '{}': {}{}{}{}", k.spec.str(), device_.ordinal,
       device_.name, drv_->errorText(r), hint, log.empty() ? "" : "; JIT log: ", log);
}

std::unique_ptr<LoadedKernel> KernelCache::load(const KernelSpec &spec, const std::string &key) {
  auto k = std::make_unique<LoadedKernel>();
  k->spec = spec;
  k->key = key;
  k->sharedBytes = sharedMemoryBytes(spec);
  k->threads = threadsPerCta(spec);
  if (k->sharedBytes > device_.sharedPerBlockOptin)
    fail(NSAJIT_ERROR_UNSUPPORTED,
         "the kernel for {} needs {} bytes of shared memory per CTA but GPU {} '{}' allows at most {} (with "
         "opt-in): use smaller tiles (tile_kv_chunk, tile_warps) or head dims",
         spec.str(), k->sharedBytes, device_.ordinal, device_.name, device_.sharedPerBlockOptin);

  ScopedContext scope(*drv_, context_);
  if (std::shared_ptr<const Ptxas> ptxas = Ptxas::get())
    k->module = loadMachineCode(*k, *ptxas);
  if (!k->module)
    loadThroughDriverJit(*k);
  bump(&CacheCounters::modulesLoaded, &counters_);
  struct ModuleGuard {
    const CudaDriver &drv;
    CUmodule &m;
    bool keep = false;
    ~ModuleGuard() {
      if (!keep && m) {
        drv.cuModuleUnload(m);
        m = nullptr;
      }
    }
  } guard{*drv_, k->module};

  std::string name = spec.kernelName();
  CUresult r = drv_->cuModuleGetFunction(&k->function, k->module, name.c_str());
  if (r != CUDA_SUCCESS)
    fail(NSAJIT_ERROR_INTERNAL, "the PTX of {} has no kernel '{}': cuModuleGetFunction failed: {}", spec.str(), name,
         drv_->errorText(r));
  if (k->sharedBytes > 48 * 1024)
    drv_->check(drv_->cuFuncSetAttribute(k->function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                         k->sharedBytes),
                "cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)");
  int value = 0;
  if (drv_->cuFuncGetAttribute(&value, CU_FUNC_ATTRIBUTE_NUM_REGS, k->function) == CUDA_SUCCESS)
    k->numRegs = value;
  if (drv_->cuFuncGetAttribute(&value, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, k->function) == CUDA_SUCCESS)
    k->localBytes = value;
  if (drv_->cuFuncGetAttribute(&value, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, k->function) == CUDA_SUCCESS &&
      value > 0 && value < k->threads)
    fail(NSAJIT_ERROR_UNSUPPORTED,
         "the kernel for {} uses {} registers per thread, so GPU {} '{}' runs at most {} threads per CTA, but its "
         "tile needs {}: use fewer warps (tile_warps)",
         spec.str(), k->numRegs, device_.ordinal, device_.name, value, k->threads);
  guard.keep = true;
  return k;
}

} // namespace nsajit::rt
