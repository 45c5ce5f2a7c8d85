// The gated combination of the three branch outputs (nsajit_gated_combine):
// argument checks (no GPU needed), CombineKernelArgs (KernelAbi.h) and the launch.
#pragma once

#include "Validate.h"

struct nsajit_context;

namespace nsajit::rt {

struct CombineRequest {
  const nsajit_config *config = nullptr; // dtype, H, G, Dv
  int batch = 0, seqLen = 0;
  const nsajit_tensor *o[3] = {};    // compressed, selected, window: [B, T, HQ, Dv]
  const nsajit_tensor *gate[3] = {}; // fp32 [B, T, HQ] or NULL (1)
  const nsajit_tensor *out = nullptr; // [B, T, HQ, Dv], written
};

struct PreparedCombine {
  CombineKernelArgs args;
  LaunchDims kernel;
  bool empty = false; // no element: nothing to launch
  SpanList spans;
};

// The kernel's spec: one per dtype and Dv (the branch, G and the rest are fixed).
KernelSpec combineSpec(const nsajit_config *config, Arch arch);
PreparedCombine prepareCombine(const CombineRequest &req, Arch arch);
std::array<void *, kCombineKernelParamCount> kernelParams(CombineKernelArgs &args);
void launchCombine(nsajit_context &ctx, const CombineRequest &req, void *stream);

} // namespace nsajit::rt
