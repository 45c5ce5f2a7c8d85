// The backward of one branch: argument checks (no GPU needed), the parameter
// block of the three backward kernels (BackwardKernelArgs, KernelAbi.h), and
// the launch of bwd_pre, bwd_dq and bwd_dkdv in that order on the caller's stream.
#pragma once

#include "Validate.h"

#include <optional>

struct nsajit_context;

namespace nsajit::rt {

struct BackwardRequest {
  Branch branch = Branch::Selected;
  const nsajit_config *config = nullptr;
  int batch = 0;
  int seqLen = 0;
  // Inputs.
  const nsajit_tensor *q = nullptr;
  const nsajit_tensor *k = nullptr;       // k_cmp for the compressed branch
  const nsajit_tensor *v = nullptr;       // v_cmp for the compressed branch
  const nsajit_tensor *indices = nullptr; // selected branch only
  const nsajit_tensor *o = nullptr;       // this branch's forward output
  const nsajit_tensor *lse = nullptr;     // this branch's forward lse
  const nsajit_tensor *dout = nullptr;    // gradient of the gated sum
  const nsajit_tensor *gate = nullptr;    // optional (NULL: all ones)
  // Outputs.
  const nsajit_tensor *delta = nullptr;   // fp32 scratch, written
  const nsajit_tensor *dq = nullptr;
  const nsajit_tensor *dk = nullptr;
  const nsajit_tensor *dv = nullptr;
  const nsajit_tensor *dgate = nullptr;   // required with gate, NULL without
};

inline constexpr int kBackwardKernels = 3;

struct PreparedBackward {
  BackwardKernelArgs args;                      // the parameter block all three kernels take
  std::array<LaunchDims, kBackwardKernels> kernels; // bwd_pre, bwd_dq, bwd_dkdv
  int numKernels = kBackwardKernels;            // 2 when Tkv == 0: no key, so no dk/dv to write
  // The selected dQ kernels' two-kernel schedule (selectedFirstKernel): the
  // wgmma union kernel launched before bwd_dq, its hand-over (args.tokenDone)
  // at tokenDoneOffset of the workspace.
  std::optional<LaunchDims> dqFirst;
  std::uint64_t tokenDoneOffset = 0;
  int dkdvSplits = 1;                           // CTAs a key chunk's token walk is split over
  std::uint64_t workspaceBytes = 0;             // the selection map, then bwd_dkdv's split sums (S > 1)
  std::uint64_t workspaceZeroedBytes = 0;       // its head (the map, the split state), zeroed before bwd_pre
  SpanList spans; // q, k, v, [indices], o, lse, dout, [gate], delta, dq, dk, dv, [dgate]
};

// The context's backward settings.
struct BackwardOptions {
  int splitTokens = 0; // see dkdvSplits
  // The dQ kernel's first kernel (selectedFirstKernel), if the schedule applies.
  std::optional<KernelSpec> dqFirst;
  // The most bytes the selected branch's selection map may take (KernelAbi.h);
  // a larger map (long sequences), or a limit of 0, makes bwd_dkdv scan the
  // index lists instead (H100, T = 64k, paper head dims, random indices:
  // bwd_dkdv 42.2 ms with the scan).
  std::uint64_t selectionMapLimit = kDefaultSelectionMapLimit;
  int smCount = 0; // the GPU's SMs, for the selected branch's automatic split (0: kDefaultSmCount)
};

// Checks everything that can be checked without a GPU. Throws Error.
PreparedBackward prepareBackward(const BackwardRequest &req, Arch arch, const BackwardOptions &options = {});

// How many CTAs split the query-token walk of each bwd_dkdv key chunk: enough
// that none walks more than about `splitTokens` tokens, at most kMaxDkdvSplits.
// 0 is automatic: 1024 tokens for the compressed branch (below), 2048 for the
// window (a window walk is shorter: no split); the selected one: kSelectedSplitTokens. Without splits the
// CTA of the first compressed keys walks the whole sequence alone (H100,
// T = 64k, compressed l = d = 64: 83 ms of a 93 ms forward + backward), and so
// does the CTA of a block every token selects (the NSA's initial block).
// A split with work waits for the earlier splits, and a selected block's splits
// visit uneven numbers of tokens (those that selected it), so short segments
// cost more there: bwd_dkdv, H100, T = 64k, paper head dims, random indices:
// no split 59.8 ms, 8192 tokens 45.2, 4096 51.0, 2048 76.9, 512 180.5;
// compressed l = 32, d = 16: 1024 tokens 58.2, 2048 54.1, 8192 52.0 (with
// l = d = 64: 12.6, 11.4, 15.2). bench/results/2026-11-26-h100-session5/s5run8.
// With `unsplitCtas` (the launch's CTAs before splitting) the automatic dense
// split stops at about kDkdvTargetCtas CTAs, with segments of at most 8192 tokens:
// the wgmma kernels, compressed l = 32, d = 16 (256 unsplit CTAs): 34.8 ms at 2048
// tokens, 33.2 at 8192 (bench/results/2026-11-26-h100-session6/s6run11), while
// l = d = 64 (64 unsplit CTAs) keeps 2048.
// Since the compressed walk is segment-major (the same token segments for every
// chunk, templates/BackwardAttention.cpp dkdvWalk), its segments are 1024 tokens
// with no growth (many of its CTAs find no work): [paper] 25.1 -> 23.8 ms,
// l = d = 64 5.4-5.7 -> 5.3 (H100, T = 64k, s14run3).
inline constexpr int kMaxDkdvSplits = 64;
// The selected branch's automatic split. Every token selects the initial
// block (NSA's forced blocks), so its CTAs walk the whole sequence between
// them; with too few splits they run on alone after the other CTAs are done,
// with too many the split sums cost more than they save (s15run5). The rule
// (dkdvSplits): about as many tokens a split as a resident CTA walks on
// average, B H T n / (kSelectedDkdvCtasPerSm x SMs) (2 CTAs of 4 warps an SM,
// by its registers), rounded, and at least kSelectedMinSplitTokens. H100,
// T = 64k, B = 1, H = 4, n = 16: 4 splits. Selected dK/dV random / local
// indices (ms, s16run3): [paper] 8 splits (8192 tokens) 19.7 / 17.6, 4 18.0 /
// 16.1, 2 17.5 / 28.2, 16 25.7 / 24.1; [main] 14.8 / 13.4, 13.5 / 11.8, 12.8 /
// 19.2, 20.6 / 19.3. A fixed length fails at other lengths: [paper], random /
// local (s16run7): T = 32k, the rule's 4 splits 9.0 / 8.0 ms, 2 splits (16384
// tokens) 9.2 / 14.3, 8 splits 9.3 / 8.7; T = 16k, 4 splits 4.8 / 4.2, 2
// (8192 tokens) 5.1 / 7.1, 1 5.3 / 13.4.
// kSelectedSplitTokens serves where the launch's CTAs are not known.
inline constexpr int kSelectedSplitTokens = 16384;
inline constexpr int kSelectedMinSplitTokens = 4096;
inline constexpr int kSelectedDkdvCtasPerSm = 2;
inline constexpr int kDefaultSmCount = 132; // H100 SXM
inline constexpr int kCompressedSplitTokens = 1024;
inline constexpr std::int64_t kDkdvTargetCtas = 2048;
int dkdvSplits(const KernelSpec &dkdv, std::int64_t seqLen, int splitTokens, std::int64_t unsplitCtas = 0,
               int smCount = 0);

// The scalar kernel parameters in BackwardKernelArgs order (15 u64, 39 i64,
// 3 i32), as cuLaunchKernel wants them: an array of pointers into `args`.
std::array<void *, kBackwardKernelParamCount> kernelParams(BackwardKernelArgs &args);

// Validates the request, loads the three kernels (all before the first
// launch), and launches them in order on `stream`. The dK/dV split length is
// the context's (nsajit_context_set_backward_split), else the tuned one
// (tuneBackward, Tuner.h), else automatic; `splitTokensOverride` >= 0 takes
// its place (the tuner's candidates). Throws Error.
void launchBackward(nsajit_context &ctx, const BackwardRequest &req, void *stream, int splitTokensOverride = -1);

// The split length the tuning database holds for `dkdv`'s spec at batch x
// seqLen (the entry nearest in tokens), if any and tuning is on.
std::optional<int> tunedBackwardSplit(const nsajit_context &ctx, const KernelSpec &dkdv, int batch, int seqLen);

} // namespace nsajit::rt
