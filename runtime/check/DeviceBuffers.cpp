#include "DeviceBuffers.h"

#include <dlfcn.h>
#include <stdexcept>

namespace nsajit::check {
namespace {

struct Api {
  CUresult (*init)(unsigned);
  CUresult (*deviceGetCount)(int *);
  CUresult (*deviceGet)(CUdevice *, int);
  CUresult (*deviceGetName)(char *, int, CUdevice);
  CUresult (*primaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*ctxSetCurrent)(CUcontext);
  CUresult (*memAlloc)(CUdeviceptr *, std::size_t);
  CUresult (*memFree)(CUdeviceptr);
  CUresult (*htod)(CUdeviceptr, const void *, std::size_t);
  CUresult (*dtoh)(void *, CUdeviceptr, std::size_t);
  CUresult (*memsetD8)(CUdeviceptr, unsigned char, std::size_t);
  CUresult (*ctxSynchronize)();
  CUresult (*getErrorString)(CUresult, const char **);
};

Api api;

template <typename F> bool resolve(void *lib, F &fn, const char *name) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

} // namespace

Device *Device::open(std::string &why) {
  static Device *device = nullptr;
  static std::string failure;
  static bool tried = false;
  if (tried) {
    why = failure;
    return device;
  }
  tried = true;
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    failure = why = std::string("no CUDA driver (libcuda.so.1: ") + dlerror() + ")";
    return nullptr;
  }
  bool ok = resolve(lib, api.init, "cuInit") && resolve(lib, api.deviceGetCount, "cuDeviceGetCount") &&
            resolve(lib, api.deviceGet, "cuDeviceGet") && resolve(lib, api.deviceGetName, "cuDeviceGetName") &&
            resolve(lib, api.primaryCtxRetain, "cuDevicePrimaryCtxRetain") &&
            resolve(lib, api.ctxSetCurrent, "cuCtxSetCurrent") && resolve(lib, api.memAlloc, "cuMemAlloc_v2") &&
            resolve(lib, api.memFree, "cuMemFree_v2") && resolve(lib, api.htod, "cuMemcpyHtoD_v2") &&
            resolve(lib, api.dtoh, "cuMemcpyDtoH_v2") && resolve(lib, api.memsetD8, "cuMemsetD8_v2") &&
            resolve(lib, api.ctxSynchronize, "cuCtxSynchronize") &&
            resolve(lib, api.getErrorString, "cuGetErrorString");
  int count = 0;
  CUdevice dev = 0;
  CUcontext ctx = nullptr;
  char name[256] = {0};
  if (!ok || api.init(0) != CUDA_SUCCESS || api.deviceGetCount(&count) != CUDA_SUCCESS || count == 0 ||
      api.deviceGet(&dev, 0) != CUDA_SUCCESS || api.primaryCtxRetain(&ctx, dev) != CUDA_SUCCESS ||
      api.ctxSetCurrent(ctx) != CUDA_SUCCESS) {
    failure = why = "no CUDA device";
    return nullptr;
  }
  api.deviceGetName(name, sizeof(name) - 1, dev);
  device = new Device();
  device->name_ = name;
  return device;
}

void Device::check(CUresult r, const char *what) {
  if (r == CUDA_SUCCESS)
    return;
  const char *s = "?";
  api.getErrorString(r, &s);
  throw std::runtime_error(std::string(what) + " failed: " + s);
}

CUdeviceptr Device::alloc(std::size_t bytes) {
  CUdeviceptr p = 0;
  check(api.memAlloc(&p, bytes), "cuMemAlloc");
  return p;
}
void Device::free(CUdeviceptr p) { api.memFree(p); }
void Device::upload(CUdeviceptr dst, const void *src, std::size_t bytes) {
  check(api.htod(dst, src, bytes), "cuMemcpyHtoD");
}
void Device::download(void *dst, CUdeviceptr src, std::size_t bytes) {
  check(api.dtoh(dst, src, bytes), "cuMemcpyDtoH");
}
void Device::fill(CUdeviceptr dst, std::uint8_t byte, std::size_t bytes) {
  check(api.memsetD8(dst, byte, bytes), "cuMemsetD8");
}
void Device::synchronize() { check(api.ctxSynchronize(), "cuCtxSynchronize"); }

} // namespace nsajit::check
