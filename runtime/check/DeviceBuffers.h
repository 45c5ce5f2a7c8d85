// Minimal device-memory helpers for `nsajit check` and the GPU tests, over the Driver API loaded
// with dlopen (like the library, they never link libcuda). They make the
// device's primary context current so nsajit and the test share it.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nsajit::check {

class Device {
public:
  // Returns nullptr and sets `why` when there is no driver or no device.
  static Device *open(std::string &why);

  CUdeviceptr alloc(std::size_t bytes);
  void free(CUdeviceptr p);
  void upload(CUdeviceptr dst, const void *src, std::size_t bytes);
  void download(void *dst, CUdeviceptr src, std::size_t bytes);
  void fill(CUdeviceptr dst, std::uint8_t byte, std::size_t bytes);
  void synchronize();
  std::string name() const { return name_; }

private:
  void check(CUresult r, const char *what);
  std::string name_;
};

// A device allocation freed on scope exit.
class Buffer {
public:
  Buffer(Device &d, std::size_t bytes) : dev(d), bytes(bytes), ptr(bytes ? d.alloc(bytes) : 0) {}
  ~Buffer() {
    if (ptr) dev.free(ptr);
  }
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  template <typename T> void upload(const std::vector<T> &v) { dev.upload(ptr, v.data(), v.size() * sizeof(T)); }
  template <typename T> std::vector<T> download(std::size_t count) {
    std::vector<T> v(count);
    dev.download(v.data(), ptr, count * sizeof(T));
    return v;
  }
  Device &dev;
  std::size_t bytes;
  CUdeviceptr ptr;
};

} // namespace nsajit::check
