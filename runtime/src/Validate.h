// Argument checking for the C API, independent of any GPU: turns a config and
// tensor views into a KernelSpec, the kernel's parameter block and its launch
// dimensions, or throws an Error naming the offending argument and what is allowed.
#pragma once

#include "Error.h"

#include "nsajit/compiler/KernelAbi.h"
#include "nsajit/compiler/KernelSpec.h"
#include "nsajit/nsajit.h"

#include <array>
#include <cstdint>

namespace nsajit::rt {

inline constexpr int kMaxBatch = 65535;      // grid z
inline constexpr int kMaxKvHeads = 65535;    // grid y

// A copy of the caller's config, reading only the struct_size bytes it knows
// (newer fields keep their defaults); extra non-zero bytes from a newer caller
// are rejected as UNSUPPORTED.
nsajit_config readConfig(const nsajit_config *config);
nsajit_config defaultConfig();

Branch branchFromC(int branch);  // throws INVALID_ARGUMENT for unknown values
Arch archFromInt(int arch);      // 80 -> SM80, 90 -> SM90a; throws INVALID_ARGUMENT

// The spec for `branch` (tile defaults filled in) or an Error: INVALID_ARGUMENT
// for a NULL/ill-formed config, UNSUPPORTED (with validate()'s message) for a
// configuration nsajit cannot generate.
KernelSpec specFromConfig(const nsajit_config *config, Branch branch, Arch arch);

// Number of compressed tokens: T >= l ? (T - l) / d + 1 : 0.
int compressedLength(int seqLen, int cmpBlock, int cmpStride);

struct ForwardRequest {
  Branch branch = Branch::Selected;
  const nsajit_config *config = nullptr;
  int batch = 0;
  int seqLen = 0;
  const nsajit_tensor *q = nullptr;
  const nsajit_tensor *k = nullptr;   // k_cmp for the compressed branch
  const nsajit_tensor *v = nullptr;   // v_cmp for the compressed branch
  const nsajit_tensor *indices = nullptr; // selected branch only
  const nsajit_tensor *out = nullptr;
  const nsajit_tensor *lse = nullptr;
};

// The memory a tensor argument touches: [data, data + bytes).
struct TensorSpan {
  const char *name = nullptr;
  std::uint64_t data = 0;
  std::uint64_t bytes = 0;
};

struct PreparedLaunch {
  KernelSpec spec;          // arch set, tile defaults filled in
  ForwardKernelArgs args;   // the kernel's parameter block
  std::array<unsigned, 3> grid{};
  unsigned threads = 0;
  unsigned sharedBytes = 0;
  std::array<TensorSpan, 6> spans{}; // q, k, v, indices, out, lse (bytes 0: not used)
  int numSpans = 0;
};

// Checks everything that can be checked without a GPU. Throws Error.
PreparedLaunch prepareForward(const ForwardRequest &req, Arch arch);

// Checks the indices view of nsajit_check_indices (and returns its span).
TensorSpan checkIndicesView(const nsajit_config *config, int batch, int seqLen, const nsajit_tensor *indices,
                            KernelSpec &specOut);

// The scalar kernel parameters in ForwardKernelArgs order (6 u64, 18 i64, 2 i32),
// as cuLaunchKernel wants them: an array of pointers into `args`.
std::array<void *, kForwardKernelParamCount> kernelParams(ForwardKernelArgs &args);

} // namespace nsajit::rt
