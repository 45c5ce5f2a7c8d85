// The parameter list every generated forward kernel takes, shared by the code
// generator (templates/) and the launcher (runtime/). Change both together:
// the kernel's parameter order is this struct's field order.
#pragma once

#include <cstdint>

namespace nsajit {

// Strides are in elements of the tensor's own type; the last dimension of
// every tensor is contiguous (stride 1), which the runtime checks.
struct TensorStrides3 {
  std::int64_t batch = 0, token = 0, head = 0;
};

struct ForwardKernelArgs {
  std::uint64_t q = 0;     // [B, T, HQ, Dk]  bf16/fp16
  std::uint64_t k = 0;     // [B, Tkv, H, Dk] bf16/fp16
  std::uint64_t v = 0;     // [B, Tkv, H, Dv] bf16/fp16
  std::uint64_t idx = 0;   // [B, T, H, n] int32 (selected branch; 0 otherwise)
  std::uint64_t o = 0;     // [B, T, HQ, Dv]  bf16/fp16
  std::uint64_t lse = 0;   // [B, T, HQ] fp32, natural log; -inf where a row sees no key
  TensorStrides3 qs, ks, vs, idxs, os, lses;
  std::int32_t seqLen = 0;   // T
  std::int32_t kvLen = 0;    // Tkv: T (selected, window) or Tc (compressed)
};

// Number of scalar kernel parameters, in order: 6 pointers, 18 strides, 2 ints.
inline constexpr int kForwardKernelParamCount = 6 + 18 + 2;

// Grid: x = ceil(T / tile.tokensPerCta), y = H (KV heads), z = B.
// Block: threadsPerCta(spec); dynamic shared memory: sharedMemoryBytes(spec).

} // namespace nsajit
