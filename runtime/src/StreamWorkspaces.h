// Device scratch memory the context owns, one buffer per CUDA stream: the
// split bwd_dkdv's partial sums and counters (KernelAbi.h). Kernels of one
// stream run in order, so a stream's calls can share its buffer; calls on two
// streams at once must not, hence one buffer a stream. A buffer grows (after
// its stream has drained); its users initialise what they need on the stream.
// Freed with the context.
#pragma once

#include "CudaDriver.h"

#include <cstdint>
#include <map>
#include <mutex>

namespace nsajit::rt {

class StreamWorkspaces {
public:
  explicit StreamWorkspaces(const CudaDriver &drv) : drv_(drv) {}
  ~StreamWorkspaces(); // the context must be current or alive (cuMemFree)
  StreamWorkspaces(const StreamWorkspaces &) = delete;
  StreamWorkspaces &operator=(const StreamWorkspaces &) = delete;

  // A buffer of at least `bytes` for `stream` (contents undefined). The
  // context must be current. Throws Error when the allocation fails.
  CUdeviceptr get(void *stream, std::uint64_t bytes);

private:
  struct Buffer {
    CUdeviceptr ptr = 0;
    std::uint64_t bytes = 0;
  };
  const CudaDriver &drv_;
  std::mutex mutex_;
  std::map<void *, Buffer> buffers_;
};

} // namespace nsajit::rt
