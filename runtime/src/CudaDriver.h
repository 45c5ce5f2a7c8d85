// The CUDA Driver API, loaded at run time with dlopen("libcuda.so.1") so that
// libnsajit.so loads (and reports a clear error) on machines without a driver.
// cuda.h is included for its types and prototypes only; nothing links libcuda.
#pragma once

#include "Error.h"

#include <cuda.h>

#include <memory>
#include <string>

namespace nsajit::rt {

class CudaDriver {
public:
  // The process-wide driver: loaded and cuInit'ed on first use (thread-safe).
  // Throws Error(NSAJIT_ERROR_NO_DEVICE) when libcuda.so.1 is missing or cuInit
  // reports no device, Error(NSAJIT_ERROR_DRIVER_ERROR) when a symbol is missing.
  // The library is $NSAJIT_LIBCUDA when set, else "libcuda.so.1".
  static std::shared_ptr<const CudaDriver> get();

  // Tests only: forget the loaded driver (and a remembered load failure) so the
  // next get() loads `path` (empty: the default). Objects holding the previous
  // driver keep it alive.
  static void resetForTesting(const std::string &path);

  // "CUDA_ERROR_OUT_OF_MEMORY (out of memory)"
  std::string errorText(CUresult r) const;
  // Throws an Error naming `what` and the CUresult when r != CUDA_SUCCESS. The
  // status is OUT_OF_MEMORY, NO_DEVICE or DRIVER_ERROR depending on r.
  void check(CUresult r, const char *what) const;
  static nsajit_status statusFor(CUresult r);

  const std::string &libraryPath() const { return path_; }
  int driverVersion() const { return driverVersion_; } // e.g. 13000

  // Resolved entry points (the versioned symbols that cuda.h maps the plain names to).
  decltype(&::cuInit) cuInit = nullptr;
  decltype(&::cuDriverGetVersion) cuDriverGetVersion = nullptr;
  decltype(&::cuDeviceGet) cuDeviceGet = nullptr;
  decltype(&::cuDeviceGetCount) cuDeviceGetCount = nullptr;
  decltype(&::cuDeviceGetAttribute) cuDeviceGetAttribute = nullptr;
  decltype(&::cuDeviceGetName) cuDeviceGetName = nullptr;
  decltype(&::cuCtxGetCurrent) cuCtxGetCurrent = nullptr;
  decltype(&::cuCtxSetCurrent) cuCtxSetCurrent = nullptr;
  decltype(&::cuCtxGetDevice) cuCtxGetDevice = nullptr;
  decltype(&::cuCtxSynchronize) cuCtxSynchronize = nullptr;
  decltype(&::cuDevicePrimaryCtxRetain) cuDevicePrimaryCtxRetain = nullptr;
  decltype(&::cuDevicePrimaryCtxRelease_v2) cuDevicePrimaryCtxRelease = nullptr;
  decltype(&::cuModuleLoadDataEx) cuModuleLoadDataEx = nullptr;
  decltype(&::cuModuleLoadData) cuModuleLoadData = nullptr;
  decltype(&::cuModuleUnload) cuModuleUnload = nullptr;
  decltype(&::cuModuleGetFunction) cuModuleGetFunction = nullptr;
  decltype(&::cuFuncSetAttribute) cuFuncSetAttribute = nullptr;
  decltype(&::cuFuncGetAttribute) cuFuncGetAttribute = nullptr;
  decltype(&::cuLaunchKernel) cuLaunchKernel = nullptr;
  decltype(&::cuGetErrorName) cuGetErrorName = nullptr;
  decltype(&::cuGetErrorString) cuGetErrorString = nullptr;
  decltype(&::cuMemAlloc_v2) cuMemAlloc = nullptr;
  decltype(&::cuMemFree_v2) cuMemFree = nullptr;
  decltype(&::cuMemcpyHtoD_v2) cuMemcpyHtoD = nullptr;
  decltype(&::cuMemcpyDtoH_v2) cuMemcpyDtoH = nullptr;
  decltype(&::cuMemsetD8_v2) cuMemsetD8 = nullptr;
  decltype(&::cuMemsetD8Async) cuMemsetD8Async = nullptr;
  decltype(&::cuMemGetAddressRange_v2) cuMemGetAddressRange = nullptr;
  decltype(&::cuStreamSynchronize) cuStreamSynchronize = nullptr;
  decltype(&::cuEventCreate) cuEventCreate = nullptr;
  decltype(&::cuEventRecord) cuEventRecord = nullptr;
  decltype(&::cuEventSynchronize) cuEventSynchronize = nullptr;
  decltype(&::cuEventElapsedTime) cuEventElapsedTime = nullptr;
  decltype(&::cuEventDestroy_v2) cuEventDestroy = nullptr;
  decltype(&::cuPointerGetAttribute) cuPointerGetAttribute = nullptr;

  CudaDriver(const CudaDriver &) = delete;
  CudaDriver &operator=(const CudaDriver &) = delete;
  ~CudaDriver(); // never dlclose()s: other threads may still be inside the driver

  // Loads and initialises a driver from `path` (throws as get() does).
  static std::shared_ptr<CudaDriver> load(const std::string &path, bool pathFromEnv);

private:
  CudaDriver() = default;
  void *handle_ = nullptr;
  std::string path_;
  int driverVersion_ = 0;
};

// Makes `ctx` current on this thread for the scope and restores the previous
// current context afterwards.
class ScopedContext {
public:
  ScopedContext(const CudaDriver &drv, CUcontext ctx);
  ~ScopedContext();
  ScopedContext(const ScopedContext &) = delete;
  ScopedContext &operator=(const ScopedContext &) = delete;

private:
  const CudaDriver &drv_;
  CUcontext prev_ = nullptr;
  bool switched_ = false;
};

} // namespace nsajit::rt
