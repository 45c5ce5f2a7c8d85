// nsajit.hpp: a header-only C++ (17 or newer) layer over the C API of
// nsajit.h: RAII handles, exceptions instead of status codes, std::string_view.
//
//   nsajit::Context ctx;                                  // current device
//   nsajit::Config cfg;                                   // the paper's defaults
//   cfg.withHeads(4, 16).withHeadDims(192, 128);
//   ctx.selectedForward(cfg, B, T, q, k, v, idx, out, lse, stream);
//   ctx.selectedBackward(cfg, B, T, q, k, v, idx, out, lse, dout, gate, delta,
//                        dq, dk, dv, dgate, stream);
//
// Every failure throws nsajit::Error, whose status() is the C status and whose
// what() is the message of nsajit_last_error().
#pragma once

#include "nsajit/nsajit.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace nsajit {

class Error : public std::runtime_error {
public:
  Error(nsajit_status status, const std::string &message) : std::runtime_error(message), status_(status) {}
  nsajit_status status() const noexcept { return status_; }
  const char *statusName() const noexcept { return nsajit_status_string(status_); }

private:
  nsajit_status status_;
};

// Throws Error(status, nsajit_last_error()) unless status is NSAJIT_OK.
inline void throwIfError(nsajit_status status) {
  if (status != NSAJIT_OK)
    throw Error(status, nsajit_last_error());
}

// nsajit_config with the defaults of nsajit_config_init and chainable setters.
struct Config : nsajit_config {
  Config() : nsajit_config() { throwIfError(nsajit_config_init(this)); }
  Config &withDtype(nsajit_dtype t) { dtype = t; return *this; }
  Config &withHeadDims(int dk, int dv) { head_dim_qk = dk; head_dim_v = dv; return *this; }
  // H key/value heads, G query heads per KV head (HQ = H * G).
  Config &withHeads(int numKvHeads, int groupSize) { num_kv_heads = numKvHeads; group = groupSize; return *this; }
  Config &withCompression(int block, int stride) { cmp_block = block; cmp_stride = stride; return *this; }
  Config &withSelection(int block, int count) { slc_block = block; slc_count = count; return *this; }
  Config &withWindow(int w) { window = w; return *this; }
  Config &withScale(float s) { scale = s; return *this; }
  Config &withTile(int warps, int tokens, int kvChunk) {
    tile_warps = warps; tile_tokens = tokens; tile_kv_chunk = kvChunk; return *this;
  }
  const nsajit_config *get() const noexcept { return this; }
};

// nsajit_tensor: a strided view of device memory (strides in elements).
struct Tensor : nsajit_tensor {
  Tensor() noexcept : nsajit_tensor{0, 0, 0, 0} {}
  Tensor(std::uint64_t devicePtr, std::int64_t strideBatch, std::int64_t strideToken, std::int64_t strideHead) noexcept
      : nsajit_tensor{devicePtr, strideBatch, strideToken, strideHead} {}
  Tensor(const void *devicePtr, std::int64_t strideBatch, std::int64_t strideToken, std::int64_t strideHead) noexcept
      : Tensor(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(devicePtr)), strideBatch, strideToken,
               strideHead) {}
  // A contiguous [B, tokens, heads, dim] tensor.
  static Tensor contiguous(std::uint64_t devicePtr, std::int64_t tokens, std::int64_t heads, std::int64_t dim) noexcept {
    return Tensor(devicePtr, tokens * heads * dim, heads * dim, dim);
  }
  // A contiguous [B, tokens, heads] tensor (lse).
  static Tensor contiguous(std::uint64_t devicePtr, std::int64_t tokens, std::int64_t heads) noexcept {
    return Tensor(devicePtr, tokens * heads, heads, 1);
  }
};

struct CacheStats : nsajit_cache_counters {
  CacheStats() noexcept : nsajit_cache_counters() { struct_size = sizeof(nsajit_cache_counters); }
};

struct KernelInfo : nsajit_kernel_info {
  KernelInfo() noexcept : nsajit_kernel_info() { struct_size = sizeof(nsajit_kernel_info); }
  std::string_view kernelName() const noexcept { return kernel_name; }
  std::string_view specText() const noexcept { return spec; }
};

struct TuneResult : nsajit_tune_result {
  TuneResult() noexcept : nsajit_tune_result() { struct_size = sizeof(nsajit_tune_result); }
  std::string_view database() const noexcept { return nsajit_tune_result::database; }
};

// One GPU. Move-only; destroying it unloads its kernels.
class Context {
public:
  // device: an ordinal, or -1 for the device of the current CUDA context (else 0).
  explicit Context(int device = -1) { throwIfError(nsajit_context_create(&ctx_, device)); }
  // Takes ownership of a context made with nsajit_context_create.
  static Context adopt(nsajit_context *ctx) noexcept { return Context(ctx); }
  ~Context() { reset(); }
  Context(Context &&o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
  Context &operator=(Context &&o) noexcept {
    if (this != &o) {
      reset();
      ctx_ = std::exchange(o.ctx_, nullptr);
    }
    return *this;
  }
  Context(const Context &) = delete;
  Context &operator=(const Context &) = delete;

  nsajit_context *get() const noexcept { return ctx_; }
  nsajit_context *release() noexcept { return std::exchange(ctx_, nullptr); }
  void reset() noexcept {
    if (ctx_)
      nsajit_context_destroy(std::exchange(ctx_, nullptr));
  }

  std::string deviceInfo() const {
    char buf[1024];
    throwIfError(nsajit_device_info(ctx_, buf, sizeof buf));
    return buf;
  }
  // 80, 90, or 0 for the automatic choice.
  void setArch(int arch) { throwIfError(nsajit_context_set_arch(ctx_, arch)); }

  // The kernel's PTX (owned by the context, valid while it lives).
  std::string_view compile(const nsajit_config &config, nsajit_branch branch) const {
    const char *ptx = nullptr;
    throwIfError(nsajit_compile(ctx_, &config, branch, &ptx));
    return ptx;
  }
  KernelInfo kernelInfo(const nsajit_config &config, nsajit_branch branch) const {
    KernelInfo info;
    throwIfError(nsajit_kernel_query(ctx_, &config, branch, 0, &info));
    return info;
  }
  // Any kernel of the branch (forward or one of the backward's three).
  std::string_view compile(const nsajit_config &config, nsajit_branch branch, nsajit_kernel_pass pass) const {
    const char *ptx = nullptr;
    throwIfError(nsajit_compile2(ctx_, &config, branch, pass, &ptx));
    return ptx;
  }
  KernelInfo kernelInfo(const nsajit_config &config, nsajit_branch branch, nsajit_kernel_pass pass) const {
    KernelInfo info;
    throwIfError(nsajit_kernel_query2(ctx_, &config, branch, pass, 0, &info));
    return info;
  }
  CacheStats cacheStats() const {
    CacheStats s;
    throwIfError(nsajit_cache_stats(ctx_, &s));
    return s;
  }

  // Compiles and loads every kernel of the configuration (nsajit_prepare); returns how many.
  int prepare(const nsajit_config &config, unsigned flags = NSAJIT_PREPARE_ALL, int batch = 1, int seqLen = 0,
              nsajit_prepare_progress_fn progress = nullptr, void *user = nullptr) const {
    int n = 0;
    throwIfError(nsajit_prepare(ctx_, &config, flags, batch, seqLen, progress, user, &n));
    return n;
  }
  // Times every tile of the branch's forward kernel and records the fastest (nsajit_tune).
  TuneResult tune(const nsajit_config &config, nsajit_branch branch, int batch, int seqLen, int repeats = 20,
                  nsajit_tune_progress_fn progress = nullptr, void *user = nullptr) const {
    TuneResult r;
    throwIfError(nsajit_tune(ctx_, &config, branch, batch, seqLen, repeats, progress, user, &r));
    return r;
  }

  void compressedForward(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &q,
                         const nsajit_tensor &kCmp, const nsajit_tensor &vCmp, const nsajit_tensor &out,
                         const nsajit_tensor &lse, void *stream = nullptr) const {
    throwIfError(nsajit_compressed_forward(ctx_, &config, batch, seqLen, &q, &kCmp, &vCmp, &out, &lse, stream));
  }
  void selectedForward(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &q,
                       const nsajit_tensor &k, const nsajit_tensor &v, const nsajit_tensor &indices,
                       const nsajit_tensor &out, const nsajit_tensor &lse, void *stream = nullptr) const {
    throwIfError(nsajit_selected_forward(ctx_, &config, batch, seqLen, &q, &k, &v, &indices, &out, &lse, stream));
  }
  void windowForward(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &q,
                     const nsajit_tensor &k, const nsajit_tensor &v, const nsajit_tensor &out,
                     const nsajit_tensor &lse, void *stream = nullptr) const {
    throwIfError(nsajit_window_forward(ctx_, &config, batch, seqLen, &q, &k, &v, &out, &lse, stream));
  }
  // Backward of one branch (see nsajit.h). Two forms each: gated (gate and
  // dgate, its gradient) and ungated (all gates 1, no dgate).
  void compressedBackward(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &q,
                          const nsajit_tensor &kCmp, const nsajit_tensor &vCmp, const nsajit_tensor &o,
                          const nsajit_tensor &lse, const nsajit_tensor &dout, const nsajit_tensor &gate,
                          const nsajit_tensor &delta, const nsajit_tensor &dq, const nsajit_tensor &dk,
                          const nsajit_tensor &dv, const nsajit_tensor &dgate, void *stream = nullptr) const {
    throwIfError(nsajit_compressed_backward(ctx_, &config, batch, seqLen, &q, &kCmp, &vCmp, &o, &lse, &dout, &gate,
                                            &delta, &dq, &dk, &dv, &dgate, stream));
  }
  void compressedBackward(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &q,
                          const nsajit_tensor &kCmp, const nsajit_tensor &vCmp, const nsajit_tensor &o,
                          const nsajit_tensor &lse, const nsajit_tensor &dout, const nsajit_tensor &delta,
                          const nsajit_tensor &dq, const nsajit_tensor &dk, const nsajit_tensor &dv,
                          void *stream = nullptr) const {
    throwIfError(nsajit_compressed_backward(ctx_, &config, batch, seqLen, &q, &kCmp, &vCmp, &o, &lse, &dout, nullptr,
                                            &delta, &dq, &dk, &dv, nullptr, stream));
  }
  void selectedBackward(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &q,
                        const nsajit_tensor &k, const nsajit_tensor &v, const nsajit_tensor &indices,
                        const nsajit_tensor &o, const nsajit_tensor &lse, const nsajit_tensor &dout,
                        const nsajit_tensor &gate, const nsajit_tensor &delta, const nsajit_tensor &dq,
                        const nsajit_tensor &dk, const nsajit_tensor &dv, const nsajit_tensor &dgate,
                        void *stream = nullptr) const {
    throwIfError(nsajit_selected_backward(ctx_, &config, batch, seqLen, &q, &k, &v, &indices, &o, &lse, &dout, &gate,
                                          &delta, &dq, &dk, &dv, &dgate, stream));
  }
  void selectedBackward(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &q,
                        const nsajit_tensor &k, const nsajit_tensor &v, const nsajit_tensor &indices,
                        const nsajit_tensor &o, const nsajit_tensor &lse, const nsajit_tensor &dout,
                        const nsajit_tensor &delta, const nsajit_tensor &dq, const nsajit_tensor &dk,
                        const nsajit_tensor &dv, void *stream = nullptr) const {
    throwIfError(nsajit_selected_backward(ctx_, &config, batch, seqLen, &q, &k, &v, &indices, &o, &lse, &dout,
                                          nullptr, &delta, &dq, &dk, &dv, nullptr, stream));
  }
  void windowBackward(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &q,
                      const nsajit_tensor &k, const nsajit_tensor &v, const nsajit_tensor &o,
                      const nsajit_tensor &lse, const nsajit_tensor &dout, const nsajit_tensor &gate,
                      const nsajit_tensor &delta, const nsajit_tensor &dq, const nsajit_tensor &dk,
                      const nsajit_tensor &dv, const nsajit_tensor &dgate, void *stream = nullptr) const {
    throwIfError(nsajit_window_backward(ctx_, &config, batch, seqLen, &q, &k, &v, &o, &lse, &dout, &gate, &delta, &dq,
                                        &dk, &dv, &dgate, stream));
  }
  void windowBackward(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &q,
                      const nsajit_tensor &k, const nsajit_tensor &v, const nsajit_tensor &o,
                      const nsajit_tensor &lse, const nsajit_tensor &dout, const nsajit_tensor &delta,
                      const nsajit_tensor &dq, const nsajit_tensor &dk, const nsajit_tensor &dv,
                      void *stream = nullptr) const {
    throwIfError(nsajit_window_backward(ctx_, &config, batch, seqLen, &q, &k, &v, &o, &lse, &dout, nullptr, &delta,
                                        &dq, &dk, &dv, nullptr, stream));
  }

  // out = the gated sum of the three branch outputs (nsajit_gated_combine); a null gate is 1.
  void gatedCombine(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &oCmp,
                    const nsajit_tensor *gCmp, const nsajit_tensor &oSlc, const nsajit_tensor *gSlc,
                    const nsajit_tensor &oSwa, const nsajit_tensor *gSwa, const nsajit_tensor &out,
                    void *stream = nullptr) const {
    throwIfError(nsajit_gated_combine(ctx_, &config, batch, seqLen, &oCmp, gCmp, &oSlc, gSlc, &oSwa, gSwa, &out,
                                      stream));
  }
  // The backward's split length and selection map limit (nsajit_context_set_backward_split,
  // nsajit_context_set_selection_map_limit).
  void setBackwardSplit(int tokens) const { throwIfError(nsajit_context_set_backward_split(ctx_, tokens)); }
  void setSelectionMapLimit(std::size_t bytes) const {
    throwIfError(nsajit_context_set_selection_map_limit(ctx_, bytes));
  }

  void checkIndices(const nsajit_config &config, int batch, int seqLen, const nsajit_tensor &indices,
                    void *stream = nullptr) const {
    throwIfError(nsajit_check_indices(ctx_, &config, batch, seqLen, &indices, stream));
  }

private:
  explicit Context(nsajit_context *ctx) noexcept : ctx_(ctx) {}
  nsajit_context *ctx_ = nullptr;
};

inline std::string_view version() noexcept { return nsajit_version(); }
inline std::string_view kernelCompilerVersion() noexcept { return nsajit_compiler_version(); }

// PTX for arch 80 or 90 without a GPU.
inline std::string compilePtx(const nsajit_config &config, nsajit_branch branch, int arch) {
  std::size_t len = 0;
  throwIfError(nsajit_compile_ptx(&config, branch, arch, nullptr, 0, &len));
  std::string ptx(len + 1, '\0');
  throwIfError(nsajit_compile_ptx(&config, branch, arch, ptx.data(), ptx.size(), &len));
  ptx.resize(len);
  return ptx;
}

inline KernelInfo kernelInfo(const nsajit_config &config, nsajit_branch branch, int arch) {
  KernelInfo info;
  throwIfError(nsajit_kernel_query(nullptr, &config, branch, arch, &info));
  return info;
}

// Any kernel of the branch (forward or one of the backward's three), without a GPU.
inline std::string compilePtx(const nsajit_config &config, nsajit_branch branch, nsajit_kernel_pass pass, int arch) {
  std::size_t len = 0;
  throwIfError(nsajit_compile_ptx2(&config, branch, pass, arch, nullptr, 0, &len));
  std::string ptx(len + 1, '\0');
  throwIfError(nsajit_compile_ptx2(&config, branch, pass, arch, ptx.data(), ptx.size(), &len));
  ptx.resize(len);
  return ptx;
}

inline KernelInfo kernelInfo(const nsajit_config &config, nsajit_branch branch, nsajit_kernel_pass pass, int arch) {
  KernelInfo info;
  throwIfError(nsajit_kernel_query2(nullptr, &config, branch, pass, arch, &info));
  return info;
}

// A pass without an arch would otherwise convert to the int arch above.
std::string compilePtx(const nsajit_config &, nsajit_branch, nsajit_kernel_pass) = delete;
KernelInfo kernelInfo(const nsajit_config &, nsajit_branch, nsajit_kernel_pass) = delete;

// Counters of the whole process.
inline CacheStats processCacheStats() {
  CacheStats s;
  throwIfError(nsajit_cache_stats(nullptr, &s));
  return s;
}

inline std::string cacheInfo() {
  char buf[4096];
  throwIfError(nsajit_cache_info(buf, sizeof buf));
  return buf;
}

} // namespace nsajit
