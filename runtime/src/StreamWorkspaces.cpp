#include "StreamWorkspaces.h"

#include "Error.h"

namespace nsajit::rt {

StreamWorkspaces::~StreamWorkspaces() {
  for (auto &[stream, buf] : buffers_)
    if (buf.ptr)
      drv_.cuMemFree(buf.ptr);
}

CUdeviceptr StreamWorkspaces::get(void *stream, std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  Buffer &buf = buffers_[stream];
  if (buf.bytes >= bytes)
    return buf.ptr;
  auto check = [&](CUresult r, const char *what) {
    if (r != CUDA_SUCCESS)
      fail(CudaDriver::statusFor(r), "backward workspace of {} bytes: {} failed: {}", bytes, what, drv_.errorText(r));
  };
  if (buf.ptr) {
    // Earlier launches on the stream may still read the old buffer.
    check(drv_.cuStreamSynchronize(static_cast<CUstream>(stream)), "cuStreamSynchronize");
    check(drv_.cuMemFree(buf.ptr), "cuMemFree");
    buf = Buffer{};
  }
  CUdeviceptr ptr = 0;
  check(drv_.cuMemAlloc(&ptr, bytes), "cuMemAlloc");
  buf = Buffer{ptr, bytes};
  return ptr;
}

} // namespace nsajit::rt
