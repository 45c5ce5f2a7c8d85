// One forward check: random inputs for a configuration, the float64 CPU
// reference, the same computation through the C API on the GPU, and the
// comparison (relative error of the output, absolute error of the lse, every
// output element written). Used by `nsajit check` and the GPU tests.
#pragma once

#include "DeviceBuffers.h"

#include "nsajit/nsajit.h"

#include <cstdint>
#include <string>
#include <vector>

namespace nsajit::check {

enum class Br { Cmp, Slc, Swa };
// Valid: random visible blocks; Hostile: plus negative, future and huge ones;
// Local: the NSA pattern (block 0, the local blocks, the rest from the 16
// blocks before), neighbours sharing most blocks, some blocks listed twice.
enum class IndexMode { Valid, Hostile, Local };

struct Case {
  Br branch;
  bool fp16;
  int dk, dv, g, h, b, t;
  int l = 32, d = 16, lsel = 64, n = 4, w = 64;
  bool padded = false;
  IndexMode indices = IndexMode::Valid;
  std::uint32_t seed = 0;
  int tileTokens = 0; // tile override (0: default); selected branch > 1: the union schedule
  int tileWarps = 0;  // tile override (0: default); dense branches on sm_90a: a multiple of 4 takes wgmma
  int tileKvChunk = 0; // tile override (0: default): keys a chunk
  int arch = 0;       // 0: the GPU's kernels; 80: force the sm_80 (mma.sync) kernels

  int hq() const { return h * g; }
  int kvLen() const;
  std::string label() const;
};

// A [B, N, Hh, D] tensor: logical values (already rounded to the dtype) and
// the strides the device copy uses (padded layouts leave gaps).
struct HostTensor {
  int B = 0, N = 0, Hh = 0, D = 0;
  std::int64_t sb = 0, st = 0, sh = 0;
  std::vector<float> values;

  void shape(int b, int n, int hh, int d, bool padded);
  std::size_t storageElems() const;
  std::vector<std::uint16_t> pack(bool fp16) const;
  std::vector<float> unpack(const std::vector<std::uint16_t> &raw, bool fp16) const;
  nsajit_tensor view(CUdeviceptr p) const { return {p, sb, st, sh}; }
};

struct Prepared {
  Case c;
  HostTensor q, k, v, o;
  std::vector<std::int32_t> idx;
  std::vector<double> refO, refLse;
  float scale = 0;
};

struct Outcome {
  bool ok = false;
  double relErr = 0, lseErr = 0;
  std::string error;
};

// The case's tensors on the device, ready for the C API.
struct DeviceCase {
  DeviceCase(Device &dev, const Prepared &p);
  // Runs the branch's forward; "" or the error.
  std::string forward(nsajit_context *ctx);
  nsajit_tensor rowTensor(CUdeviceptr ptr) const; // a contiguous [B, T, HQ] fp32 view

  const Prepared &p;
  nsajit_config cfg;
  Buffer q, k, v, o, lse, idx;
  nsajit_tensor tq, tk, tv, to, tl, ti;
};

nsajit_config configFor(const Case &c);
// ||got - want|| / ||want||, or max |got - want| when want is all zeros.
double relativeErrorOrAbs(const std::vector<float> &got, const std::vector<double> &want);

// Inputs and reference (CPU only, thread-safe).
Prepared prepare(const Case &c);
// Runs the case's branch through the C API on `ctx` and compares.
Outcome runOnGpu(Device &dev, nsajit_context *ctx, const Prepared &p);

} // namespace nsajit::check
