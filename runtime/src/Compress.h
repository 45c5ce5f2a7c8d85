// Compression (NSA's phi: mean or learned weighted pooling of keys or values
// over blocks of l tokens with stride d) and its backward: argument checks (no
// GPU needed), CompressKernelArgs (KernelAbi.h) and the launches.
#pragma once

#include "Validate.h"

#include <vector>

struct nsajit_context;

namespace nsajit::rt {

struct CompressRequest {
  const nsajit_config *config = nullptr;
  int batch = 0, seqLen = 0, dim = 0;
  const nsajit_tensor *x = nullptr;     // [B, T, H, dim]
  std::uint64_t weights = 0;            // fp32 [l] on the device; 0 = mean pooling
  const nsajit_tensor *out = nullptr;   // forward: [B, Tc, H, dim], written
  const nsajit_tensor *dout = nullptr;  // backward: [B, Tc, H, dim]
  const nsajit_tensor *dx = nullptr;    // backward: [B, T, H, dim], written
  std::uint64_t dweights = 0;           // backward: fp32 [l], written (weighted only)
};

struct PreparedCompress {
  CompressKernelArgs args;
  std::vector<LaunchDims> kernels; // pool, or pool_bwd (+ pool_dw)
  SpanList spans;
};

PreparedCompress prepareCompress(const CompressRequest &req, Arch arch, bool backward);
// The spec of a pooling kernel (Compress, CompressBackward, CompressWeightGrad) for x of head dim `dim`.
KernelSpec poolSpec(const nsajit_config *config, int dim, bool weighted, Arch arch, KernelPass pass);
std::array<void *, kCompressKernelParamCount> kernelParams(CompressKernelArgs &args);
void launchCompress(nsajit_context &ctx, const CompressRequest &req, bool backward, void *stream);

} // namespace nsajit::rt
