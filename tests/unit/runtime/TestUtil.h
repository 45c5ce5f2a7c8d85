// Helpers shared by the runtime unit tests: temporary directories, scoped
// environment variables, and the fake CUDA driver (FakeCuda.cpp).
#pragma once

#include "CudaDriver.h"
#include "DiskCache.h"
#include "FakeCuda.h"
#include "KernelCache.h"
#include "Ptxas.h"

#include "nsajit/compiler/KernelAbi.h"

#include "nsajit/nsajit.h"

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace nsajit::rt::test {

class TempDir {
public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "nsajit-rt-test-XXXXXX").string();
    char *p = ::mkdtemp(tmpl.data());
    if (!p)
      throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string &path() const { return path_; }
  std::string operator/(const std::string &name) const { return path_ + "/" + name; }

private:
  std::string path_;
};

class ScopedEnv {
public:
  ScopedEnv(const char *name, const char *value) : name_(name) {
    if (const char *old = std::getenv(name))
      old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_.c_str(), old_->c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

private:
  std::string name_;
  std::optional<std::string> old_;
};

// Collects the library's warnings while it lives (the log callback).
class LogCapture {
public:
  LogCapture() { nsajit_set_log_callback(&LogCapture::record, this); }
  ~LogCapture() { nsajit_set_log_callback(nullptr, nullptr); }
  LogCapture(const LogCapture &) = delete;
  LogCapture &operator=(const LogCapture &) = delete;
  std::vector<std::string> warnings() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return warnings_;
  }
  // Whether one warning contains every piece.
  bool hasWarning(const std::vector<std::string> &pieces) const {
    for (const std::string &w : warnings()) {
      bool all = true;
      for (const std::string &p : pieces)
        all = all && w.find(p) != std::string::npos;
      if (all)
        return true;
    }
    return false;
  }
  std::string all() const {
    std::string s;
    for (const std::string &w : warnings())
      s += w + "\n";
    return s;
  }

private:
  static void record(int level, const char *msg, void *user) {
    auto *self = static_cast<LogCapture *>(user);
    std::lock_guard<std::mutex> lock(self->mutex_);
    if (level == NSAJIT_LOG_WARNING)
      self->warnings_.push_back(msg);
  }
  mutable std::mutex mutex_;
  std::vector<std::string> warnings_;
};

// A stand-in ptxas (a shell script) that the runtime uses while this object lives:
// its "machine code" is the PTX behind the fake driver's marker. It appends its
// arguments to calls.log and fails while FAKE_PTXAS_FAIL is set.
class FakePtxas {
public:
  FakePtxas() : env_("NSAJIT_PTXAS", nullptr) {
    script_ = dir_ / "ptxas";
    {
      std::ofstream f(script_);
      f << "#!/bin/sh\n"
           "if [ \"$1\" = --version ]; then echo x >> \"$(dirname \"$0\")/versions.log\";\n"
           "  echo 'Cuda compilation tools, release 99.9, V99.9.0 (fake)'; exit 0; fi\n"
           "echo \"$@\" >> \"$(dirname \"$0\")/calls.log\"\n"
           "if [ -n \"$FAKE_PTXAS_SLEEP\" ]; then sleep \"$FAKE_PTXAS_SLEEP\"; fi\n"
           "if [ -n \"$FAKE_PTXAS_FAIL\" ]; then echo \"ptxas fatal   : $FAKE_PTXAS_FAIL\" >&2; exit 255; fi\n"
           "{ printf 'FAKE-CUBIN\\n'; cat \"$3\"; printf '\\000'; } > \"$5\"\n";
    }
    std::filesystem::permissions(script_, std::filesystem::perms::owner_all);
    ::setenv("NSAJIT_PTXAS", script_.c_str(), 1);
    Ptxas::resetForTesting();
  }
  ~FakePtxas() { Ptxas::resetForTesting(); } // env_ then restores NSAJIT_PTXAS
  // How often it was asked for its version.
  int versionRuns() const { return static_cast<int>(lines("versions.log").size()); }
  // The script's path (a test may rewrite it: a ptxas updated in place).
  const std::string &path() const { return script_; }
  // One line per assembly: "-arch=sm_90a -O3 IN -o OUT".
  std::vector<std::string> calls() const { return lines("calls.log"); }

private:
  std::vector<std::string> lines(const char *log) const {
    std::vector<std::string> out;
    std::ifstream in(dir_ / log);
    for (std::string l; std::getline(in, l);)
      out.push_back(l);
    return out;
  }

  TempDir dir_;
  ScopedEnv env_;
  std::string script_;
};

// The fake driver's control functions, resolved from the same library file the
// runtime dlopen()s.
struct FakeDriver {
  void *handle = nullptr;
#define NSAJIT_FAKE_FN(name) decltype(&::name) name = nullptr;
  NSAJIT_FAKE_FN(fakecuda_reset)
  NSAJIT_FAKE_FN(fakecuda_set_device)
  NSAJIT_FAKE_FN(fakecuda_set_init_result)
  NSAJIT_FAKE_FN(fakecuda_set_module_load_error)
  NSAJIT_FAKE_FN(fakecuda_set_image_load_error)
  NSAJIT_FAKE_FN(fakecuda_ptx_loads)
  NSAJIT_FAKE_FN(fakecuda_image_loads)
  NSAJIT_FAKE_FN(fakecuda_set_max_threads_per_block)
  NSAJIT_FAKE_FN(fakecuda_set_launch_result)
  NSAJIT_FAKE_FN(fakecuda_set_elapsed_from_shared)
  NSAJIT_FAKE_FN(fakecuda_get_last_launch)
  NSAJIT_FAKE_FN(fakecuda_get_launch)
  NSAJIT_FAKE_FN(fakecuda_launch_count)
  NSAJIT_FAKE_FN(fakecuda_loaded_modules)
  NSAJIT_FAKE_FN(fakecuda_module_loads)
  NSAJIT_FAKE_FN(fakecuda_primary_refcount)
  NSAJIT_FAKE_FN(fakecuda_max_dynamic_shared)
  NSAJIT_FAKE_FN(fakecuda_live_allocations)
#undef NSAJIT_FAKE_FN
  decltype(&::cuMemAlloc_v2) memAlloc = nullptr;
  decltype(&::cuMemFree_v2) memFree = nullptr;
  decltype(&::cuMemcpyHtoD_v2) memcpyHtoD = nullptr;
  decltype(&::cuCtxSetCurrent) ctxSetCurrent = nullptr;
  decltype(&::cuCtxGetCurrent) ctxGetCurrent = nullptr;
  decltype(&::cuDevicePrimaryCtxRetain) primaryRetain = nullptr;
  decltype(&::cuDevicePrimaryCtxRelease_v2) primaryRelease = nullptr;

  static FakeDriver &get() {
    static FakeDriver d = [] {
      FakeDriver f;
      f.handle = ::dlopen(NSAJIT_FAKE_CUDA_PATH, RTLD_NOW | RTLD_LOCAL);
      if (!f.handle)
        throw std::runtime_error(std::string("cannot load the fake driver: ") + ::dlerror());
      auto sym = [&](auto &fn, const char *name) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(f.handle, name));
        if (!fn)
          throw std::runtime_error(std::string("fake driver lacks ") + name);
      };
#define NSAJIT_FAKE_SYM(name) sym(f.name, #name);
      NSAJIT_FAKE_SYM(fakecuda_reset)
      NSAJIT_FAKE_SYM(fakecuda_set_device)
      NSAJIT_FAKE_SYM(fakecuda_set_init_result)
      NSAJIT_FAKE_SYM(fakecuda_set_module_load_error)
      NSAJIT_FAKE_SYM(fakecuda_set_image_load_error)
      NSAJIT_FAKE_SYM(fakecuda_ptx_loads)
      NSAJIT_FAKE_SYM(fakecuda_image_loads)
      NSAJIT_FAKE_SYM(fakecuda_set_max_threads_per_block)
      NSAJIT_FAKE_SYM(fakecuda_set_launch_result)
      NSAJIT_FAKE_SYM(fakecuda_set_elapsed_from_shared)
      NSAJIT_FAKE_SYM(fakecuda_get_last_launch)
      NSAJIT_FAKE_SYM(fakecuda_get_launch)
      NSAJIT_FAKE_SYM(fakecuda_launch_count)
      NSAJIT_FAKE_SYM(fakecuda_loaded_modules)
      NSAJIT_FAKE_SYM(fakecuda_module_loads)
      NSAJIT_FAKE_SYM(fakecuda_primary_refcount)
      NSAJIT_FAKE_SYM(fakecuda_max_dynamic_shared)
      NSAJIT_FAKE_SYM(fakecuda_live_allocations)
#undef NSAJIT_FAKE_SYM
      sym(f.memAlloc, "cuMemAlloc_v2");
      sym(f.memFree, "cuMemFree_v2");
      sym(f.memcpyHtoD, "cuMemcpyHtoD_v2");
      sym(f.ctxSetCurrent, "cuCtxSetCurrent");
      sym(f.ctxGetCurrent, "cuCtxGetCurrent");
      sym(f.primaryRetain, "cuDevicePrimaryCtxRetain");
      sym(f.primaryRelease, "cuDevicePrimaryCtxRelease_v2");
      return f;
    }();
    return d;
  }

  FakeCudaLaunch lastLaunch() const {
    FakeCudaLaunch l{};
    fakecuda_get_last_launch(&l);
    return l;
  }
  // Every launch since fakecuda_reset, in order.
  std::vector<FakeCudaLaunch> launches() const {
    std::vector<FakeCudaLaunch> all(static_cast<std::size_t>(fakecuda_launch_count()));
    for (std::size_t i = 0; i < all.size(); ++i)
      fakecuda_get_launch(static_cast<int>(i), &all[i]);
    return all;
  }
};

// A "device" allocation of the fake driver, freed at scope exit.
class FakeBuffer {
public:
  explicit FakeBuffer(std::size_t bytes) {
    if (FakeDriver::get().memAlloc(&ptr_, bytes) != CUDA_SUCCESS)
      throw std::runtime_error("fake cuMemAlloc failed");
    bytes_ = bytes;
  }
  ~FakeBuffer() { FakeDriver::get().memFree(ptr_); }
  FakeBuffer(const FakeBuffer &) = delete;
  FakeBuffer &operator=(const FakeBuffer &) = delete;
  CUdeviceptr ptr() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

private:
  CUdeviceptr ptr_ = 0;
  std::size_t bytes_ = 0;
};

// PTX the fake driver accepts for a spec: an entry named spec.kernelName()
// declaring the parameters of KernelAbi.h (the fake reads a launch's
// parameters as the entry declares them, like the real driver).
inline std::string fakePtx(const KernelSpec &spec) {
  // Forward: 2 ints (T, Tkv); backward: 3 (and the selection map's row words); combine: 3 (T, HQ, B).
  const bool fwd = spec.pass == KernelPass::Forward;
  const int ints = fwd ? 2 : 3;
  const int count = fwd                                  ? kForwardKernelParamCount
                    : spec.pass == KernelPass::Combine ? kCombineKernelParamCount
                                                         : kBackwardKernelParamCount;
  const int wide = count - ints;
  const std::string name = spec.kernelName();
  std::string params;
  for (int i = 0; i < count; ++i)
    params += "\t.param ." + std::string(i < wide ? "u64 " : "u32 ") + name + "_param_" + std::to_string(i) +
              (i + 1 < count ? ",\n" : "\n");
  return "// fake PTX for " + spec.str() + "\n.version 8.0\n.target " + archName(spec.arch) +
         "\n.visible .entry " + name + "(\n" + params + ")\n{\n ret;\n}\n";
}

// A compile function for the PtxCache that records what it was asked for.
// A compiler stand-in that records its calls (thread-safe: compiles run in parallel).
struct RecordingCompiler {
  int calls = 0;
  KernelSpec lastSpec;
  std::string failWith; // non-empty: fail with this message
  std::mutex mutex;
  CompileFn fn() {
    return [this](const KernelSpec &spec, std::string &ptx) -> std::string {
      std::lock_guard<std::mutex> lock(mutex);
      ++calls;
      lastSpec = spec;
      if (!failWith.empty())
        return failWith;
      ptx = fakePtx(spec);
      return {};
    };
  }
};

} // namespace nsajit::rt::test
