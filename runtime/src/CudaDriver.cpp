#include "CudaDriver.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace nsajit::rt {

namespace {

constexpr const char *kDefaultLibrary = "libcuda.so.1";

struct DriverState {
  std::mutex mutex;
  bool attempted = false;
  std::shared_ptr<const CudaDriver> driver;
  nsajit_status failStatus = NSAJIT_OK;
  std::string failMessage;
  std::string pathOverride; // tests
};

DriverState &state() {
  static DriverState *s = new DriverState(); // never destroyed: used by atexit-time destructors
  return *s;
}

} // namespace

CudaDriver::~CudaDriver() = default;

nsajit_status CudaDriver::statusFor(CUresult r) {
  switch (r) {
  case CUDA_SUCCESS: return NSAJIT_OK;
  case CUDA_ERROR_OUT_OF_MEMORY: return NSAJIT_ERROR_OUT_OF_MEMORY;
  case CUDA_ERROR_NO_DEVICE:
  case CUDA_ERROR_INVALID_DEVICE:
  case CUDA_ERROR_NO_BINARY_FOR_GPU:
  case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
  case CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
    return NSAJIT_ERROR_NO_DEVICE;
  case CUDA_ERROR_INVALID_PTX:
  case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
  case CUDA_ERROR_JIT_COMPILER_NOT_FOUND:
  case CUDA_ERROR_JIT_COMPILATION_DISABLED:
    return NSAJIT_ERROR_COMPILE_ERROR;
  default: return NSAJIT_ERROR_DRIVER_ERROR;
  }
}

std::string CudaDriver::errorText(CUresult r) const {
  const char *name = nullptr;
  const char *str = nullptr;
  if (!cuGetErrorName || cuGetErrorName(r, &name) != CUDA_SUCCESS || !name)
    name = nullptr;
  if (!cuGetErrorString || cuGetErrorString(r, &str) != CUDA_SUCCESS || !str)
    str = nullptr;
  if (!name)
    return fmt::format("CUresult {} (unknown error code)", static_cast<int>(r));
  return fmt::format("{} ({})", name, str ? str : "no description");
}

void CudaDriver::check(CUresult r, const char *what) const {
  if (r == CUDA_SUCCESS)
    return;
  throw Error(statusFor(r), fmt::format("{} failed: {}", what, errorText(r)));
}

std::shared_ptr<CudaDriver> CudaDriver::load(const std::string &path, bool pathFromEnv) {
  dlerror();
  void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *err = dlerror();
    if (pathFromEnv)
      fail(NSAJIT_ERROR_NO_DEVICE, "{} (from NSAJIT_LIBCUDA) could not be loaded as the CUDA driver libcuda (dlerror: {})",
           path, err ? err : "unknown");
    fail(NSAJIT_ERROR_NO_DEVICE, "{} not found: no NVIDIA driver on this machine (dlerror: {})", path,
         err ? err : "unknown");
  }
  std::shared_ptr<CudaDriver> d(new CudaDriver());
  d->handle_ = handle;
  d->path_ = path;

  std::string missing;
  auto resolve = [&](auto &fn, const char *name, const char *fallback = nullptr) {
    void *p = dlsym(handle, name);
    if (!p && fallback)
      p = dlsym(handle, fallback);
    if (!p) {
      if (!missing.empty())
        missing += ", ";
      missing += name;
      return;
    }
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
  };
  // Names as the driver exports them: the _v2 symbols are the ones cuda.h's
  // macros select for the current API.
  resolve(d->cuInit, "cuInit");
  resolve(d->cuDriverGetVersion, "cuDriverGetVersion");
  resolve(d->cuDeviceGet, "cuDeviceGet");
  resolve(d->cuDeviceGetCount, "cuDeviceGetCount");
  resolve(d->cuDeviceGetAttribute, "cuDeviceGetAttribute");
  resolve(d->cuDeviceGetName, "cuDeviceGetName");
  resolve(d->cuCtxGetCurrent, "cuCtxGetCurrent");
  resolve(d->cuCtxSetCurrent, "cuCtxSetCurrent");
  resolve(d->cuCtxGetDevice, "cuCtxGetDevice");
  resolve(d->cuCtxSynchronize, "cuCtxSynchronize");
  resolve(d->cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  resolve(d->cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  resolve(d->cuModuleLoadDataEx, "cuModuleLoadDataEx");
  resolve(d->cuModuleLoadData, "cuModuleLoadData");
  resolve(d->cuModuleUnload, "cuModuleUnload");
  resolve(d->cuModuleGetFunction, "cuModuleGetFunction");
  resolve(d->cuFuncSetAttribute, "cuFuncSetAttribute");
  resolve(d->cuFuncGetAttribute, "cuFuncGetAttribute");
  resolve(d->cuLaunchKernel, "cuLaunchKernel");
  resolve(d->cuGetErrorName, "cuGetErrorName");
  resolve(d->cuGetErrorString, "cuGetErrorString");
  resolve(d->cuMemAlloc, "cuMemAlloc_v2");
  resolve(d->cuMemFree, "cuMemFree_v2");
  resolve(d->cuMemcpyHtoD, "cuMemcpyHtoD_v2");
  resolve(d->cuMemcpyDtoH, "cuMemcpyDtoH_v2");
  resolve(d->cuMemsetD8, "cuMemsetD8_v2");
  resolve(d->cuMemsetD8Async, "cuMemsetD8Async");
  resolve(d->cuMemGetAddressRange, "cuMemGetAddressRange_v2");
  resolve(d->cuStreamSynchronize, "cuStreamSynchronize");
  resolve(d->cuEventCreate, "cuEventCreate");
  resolve(d->cuEventRecord, "cuEventRecord");
  resolve(d->cuEventSynchronize, "cuEventSynchronize");
  // cuEventElapsedTime_v2 appeared in CUDA 12.8; the original has the same signature.
  resolve(d->cuEventElapsedTime, "cuEventElapsedTime_v2", "cuEventElapsedTime");
  resolve(d->cuEventDestroy, "cuEventDestroy_v2");
  resolve(d->cuPointerGetAttribute, "cuPointerGetAttribute");
  if (!missing.empty())
    fail(NSAJIT_ERROR_DRIVER_ERROR,
         "the CUDA driver {} lacks the Driver API entry points {}: the NVIDIA driver is too old or this is not "
         "libcuda (nsajit needs a driver for CUDA 12.0 or newer)",
         path, missing);

  CUresult r = d->cuInit(0);
  if (r != CUDA_SUCCESS) {
    nsajit_status st = d->statusFor(r);
    if (r == CUDA_ERROR_NO_DEVICE)
      fail(NSAJIT_ERROR_NO_DEVICE, "no CUDA device: cuInit failed: {}", d->errorText(r));
    fail(st == NSAJIT_ERROR_DRIVER_ERROR ? NSAJIT_ERROR_NO_DEVICE : st,
         "no usable CUDA device: cuInit failed: {}", d->errorText(r));
  }
  d->check(d->cuDriverGetVersion(&d->driverVersion_), "cuDriverGetVersion");
  return d;
}

std::shared_ptr<const CudaDriver> CudaDriver::get() {
  DriverState &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.attempted) {
    s.attempted = true;
    std::string path = s.pathOverride;
    bool fromEnv = false;
    if (path.empty()) {
      const char *env = std::getenv("NSAJIT_LIBCUDA");
      if (env && *env) {
        path = env;
        fromEnv = true;
      } else {
        path = kDefaultLibrary;
      }
    }
    try {
      s.driver = load(path, fromEnv);
    } catch (const Error &e) {
      s.failStatus = e.status();
      s.failMessage = e.what();
    }
  }
  if (!s.driver)
    throw Error(s.failStatus, s.failMessage);
  return s.driver;
}

void CudaDriver::resetForTesting(const std::string &path) {
  DriverState &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.attempted = false;
  s.driver.reset();
  s.failStatus = NSAJIT_OK;
  s.failMessage.clear();
  s.pathOverride = path;
}

ScopedContext::ScopedContext(const CudaDriver &drv, CUcontext ctx) : drv_(drv) {
  drv_.check(drv_.cuCtxGetCurrent(&prev_), "cuCtxGetCurrent");
  if (prev_ != ctx) {
    drv_.check(drv_.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
    switched_ = true;
  }
}

ScopedContext::~ScopedContext() {
  if (switched_)
    drv_.cuCtxSetCurrent(prev_);
}

} // namespace nsajit::rt
