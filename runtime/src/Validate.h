// Argument checking for the C API, independent of any GPU: turns a config and
// tensor views into KernelSpecs, the kernels' parameter blocks and their launch
// dimensions, or throws an Error naming the offending argument and what is allowed.
//
// The building blocks (config, problem shape, tensor rules, overlap, launch
// dimensions) are shared by the forward (prepareForward, here) and the backward
// (prepareBackward, Backward.h).
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

Branch branchFromC(int branch);    // throws INVALID_ARGUMENT for unknown values
KernelPass passFromC(int pass);    // nsajit_kernel_pass; throws INVALID_ARGUMENT for unknown values
Arch archFromInt(int arch);        // 80 -> SM80, 90 -> SM90a; throws INVALID_ARGUMENT

// The spec of one kernel of `branch` (tile defaults filled in) or an Error:
// INVALID_ARGUMENT for a NULL/ill-formed config, UNSUPPORTED (with validate()'s
// message) for a configuration nsajit cannot generate. The config's tile_*
// overrides apply to the forward kernel only; the backward kernels (whose tiles
// mean different things, see KernelSpec.h) always get nsajit's default tiles.
KernelSpec specFromConfig(const nsajit_config *config, Branch branch, Arch arch,
                          KernelPass pass = KernelPass::Forward);

// Number of compressed tokens: T >= l ? (T - l) / d + 1 : 0.
int compressedLength(int seqLen, int cmpBlock, int cmpStride);

// The memory a tensor argument touches, [data, data + bytes), and how: its
// dimensions of extent > 1 with their strides in bytes, and the contiguous
// innermost run. bytes == 0: the tensor has no elements (nothing is touched).
struct TensorSpan {
  const char *name = nullptr;   // "dq"
  const char *shape = nullptr;  // "[B, T, HQ, Dk]"
  bool output = false;
  std::uint64_t data = 0;
  std::uint64_t bytes = 0;
  struct Dim {
    std::int64_t extent = 0, strideBytes = 0;
  };
  std::array<Dim, 3> dims{};
  int numDims = 0;
  std::int64_t innerBytes = 0;
};

// At most 13 tensors (the backward's).
struct SpanList {
  std::array<TensorSpan, 13> items{};
  int count = 0;
  void add(const TensorSpan &s);
  const TensorSpan *begin() const { return items.data(); }
  const TensorSpan *end() const { return items.data() + count; }
  const TensorSpan &operator[](int i) const { return items[static_cast<std::size_t>(i)]; }
};

// Throws INVALID_ARGUMENT naming both tensors when an output shares memory
// with another output or an input (inputs may overlap each other). Two views
// whose address ranges intersect are accepted when they provably touch
// different bytes: interleaved in disjoint slots of a common stride (e.g. dq,
// dk, dv as views of one packed [B, T, HQ + 2H, D] gradient).
void checkNoOverlap(const SpanList &spans);

// True when the bytes of `a` and `b` are provably disjoint (see checkNoOverlap).
bool disjoint(const TensorSpan &a, const TensorSpan &b);

// Batch, lengths and head counts of one call, checked.
struct ProblemShape {
  nsajit_config config{};
  Branch branch = Branch::Selected;
  std::int64_t B = 0, T = 0, H = 0, G = 0, HQ = 0, Dk = 0, Dv = 0, n = 0;
  std::int64_t Tkv = 0;       // T, or Tc for the compressed branch
  const char *kName = "k", *vName = "v";                      // k_cmp / v_cmp for the compressed branch
  const char *kShape = "[B, T, H, Dk]", *vShape = "[B, T, H, Dv]"; // Tc for the compressed branch
};
ProblemShape problemShape(const nsajit_config *config, const KernelSpec &spec, int batch, int seqLen);

// The per-kind tensor checks; each returns the tensor's span.
// bf16/fp16 [B, N, heads, dim]:
TensorSpan checkHalfTensor(const ProblemShape &p, const char *name, const char *shape, bool output, std::int64_t N,
                           std::int64_t heads, std::int64_t dim, const nsajit_tensor *t);
// float32 [B, T, HQ] (lse, gate, delta, dgate), head dimension contiguous:
TensorSpan checkRowTensor(const ProblemShape &p, const char *name, bool output, const nsajit_tensor *t);
// int32 [B, T, H, n]:
TensorSpan checkIndicesTensor(const ProblemShape &p, const nsajit_tensor *t, bool output = false);

TensorStrides3 stridesOf(const nsajit_tensor *t); // {0, 0, 0} for NULL

// Grid, block and shared memory of one kernel.
struct LaunchDims {
  KernelSpec spec;          // arch set, tile defaults filled in
  std::array<unsigned, 3> grid{};
  unsigned threads = 0;
  unsigned sharedBytes = 0;
};
// Forward, bwd_pre, bwd_dq: (ceil(T / tile.tokensPerCta), H, B);
// bwd_dkdv: (ceil(Tkv / tile.kvChunk), H, B) (x = 0 when Tkv == 0).
LaunchDims launchDims(const KernelSpec &spec, const ProblemShape &p);

// ---- forward ----------------------------------------------------------------

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

struct PreparedLaunch {
  KernelSpec spec;          // arch set, tile defaults filled in
  ForwardKernelArgs args;   // the kernel's parameter block
  std::array<unsigned, 3> grid{};
  unsigned threads = 0;
  unsigned sharedBytes = 0;
  SpanList spans;           // q, k, v, [indices], out, lse
};

// Checks everything that can be checked without a GPU. Throws Error.
PreparedLaunch prepareForward(const ForwardRequest &req, Arch arch);

// Checks the indices view of nsajit_check_indices (and returns its span).
TensorSpan checkIndicesView(const nsajit_config *config, int batch, int seqLen, const nsajit_tensor *indices,
                            KernelSpec &specOut);

// The scalar kernel parameters in ForwardKernelArgs order (7 u64, 18 i64, 2 i32),
// as cuLaunchKernel wants them: an array of pointers into `args`.
std::array<void *, kForwardKernelParamCount> kernelParams(ForwardKernelArgs &args);

} // namespace nsajit::rt
