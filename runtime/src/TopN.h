// The fused block scoring + top-n selection: argument checks (no GPU needed),
// its parameter block (TopNKernelArgs, KernelAbi.h) and the launch.
#pragma once

#include "Validate.h"

struct nsajit_context;

namespace nsajit::rt {

struct TopNRequest {
  const nsajit_config *config = nullptr;
  int batch = 0;
  int seqLen = 0;
  const nsajit_tensor *q = nullptr;       // [B, T, HQ, Dk]
  const nsajit_tensor *kCmp = nullptr;    // [B, Tc, H, Dk]
  const nsajit_tensor *lseCmp = nullptr;  // [B, T, HQ] fp32
  const nsajit_tensor *indices = nullptr; // [B, T, H, n] int32, written
};

struct PreparedTopN {
  KernelSpec spec;
  TopNKernelArgs args;
  LaunchDims dims;
  SpanList spans;
};

// Checks everything that can be checked without a GPU. Throws Error.
// The spec of the fused top-n kernel for `config` (its Dv ignored).
KernelSpec topNSpec(const nsajit_config *config, Arch arch);
PreparedTopN prepareTopN(const TopNRequest &req, Arch arch);
std::array<void *, kTopNKernelParamCount> kernelParams(TopNKernelArgs &args);
void launchTopN(nsajit_context &ctx, const TopNRequest &req, void *stream);

} // namespace nsajit::rt
