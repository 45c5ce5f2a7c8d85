// The autotuner: times every legal tile of a forward kernel spec on the
// context's GPU (CUDA events, random inputs of the requested size) and records
// the fastest in the context's tuning database (TuningDb), which later launches
// with default tiles use; and (tuneBackward) the split length of a backward's
// dK/dV walk, which later backward launches use. The selected branch is timed
// on random and on local block indices (localIndices), ranked by the sum.
//
// Search space (tileCandidates): warps 1..8 x kv_chunk 16..128 x query tokens
// per CTA (tokens x G filling the warps' 16-row MMA tiles; the selected branch
// takes one token per CTA), minus tiles the spec rejects or whose shared memory
// exceeds the device's opt-in limit.
#pragma once

#include "Context.h"
#include "TuningDb.h"

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace nsajit::rt {

// The legal tiles of `spec` (its own tile ignored), the default tile first.
std::vector<TileConfig> tileCandidates(const KernelSpec &spec, int sharedLimitBytes);

struct TuneResult {
  TileConfig best, defaults;
  double bestMs = 0, defaultMs = 0;
  int candidates = 0, failed = 0;
  std::string database; // where it was recorded ("" = memory only)
};

// Called after each candidate: done of total, the candidate, its time (< 0: it failed).
using TuneProgress = std::function<void(int done, int total, const TileConfig &tile, double ms)>;

// Picks the best of `candidates` by `measure` (ms; throwing Error = the candidate
// fails). The default (candidates[0]) wins ties, so tuning never makes things worse
// by noise alone unless a candidate is faster by more than `minGain` (relative).
TuneResult pickBest(const std::vector<TileConfig> &candidates, const std::function<double(const TileConfig &)> &measure,
                    const TuneProgress &progress, double minGain = 0.02);

// The index core of pickBest: candidate i's time by measure(i) (throwing Error =
// it failed, logged with describe(i)); returns the chosen index with the times.
struct PickedIndex {
  int best = -1, candidates = 0, failed = 0;
  double bestMs = 0, defaultMs = 0;
};
PickedIndex pickFastest(int candidates, const std::function<double(int)> &measure,
                        const std::function<void(int done, int i, double ms)> &progress,
                        const std::function<std::string(int)> &describe, double minGain = 0.02);

// Tunes the forward kernel of `branch` for `config` (its tile fields ignored) at
// batch x seqLen on the context's GPU, `repeats` timed launches per candidate,
// and records the result in ctx.tuning. Throws Error.
TuneResult tuneForward(nsajit_context &ctx, const nsajit_config *config, Branch branch, int batch, int seqLen,
                       int repeats, const TuneProgress &progress);

// The backward's tuning: the split length of the bwd_dkdv token walk
// (Backward.h dkdvSplits), the one backward choice that moves its time most at
// long sequences (H100, T = 64k, compressed [paper] dK/dV: 23.8 ms at 1024
// tokens, 34.7 at 4096 with the chunk-relative walk; s14run3). Candidates:
// automatic (0, first), then 256 .. 32768 tokens and no split (seqLen), each
// kept only if it gives another number of splits at this size.
std::vector<int> backwardSplitCandidates(const std::function<int(int splitTokens)> &splitsOf, int seqLen);

// Selected-branch indices [B, T, H, n] as trained models select them (bench_nsa.py's
// local_indices): block 0, the token's own block c and c - 1, two blocks drawn
// from before the 16 blocks preceding c, the rest from those near blocks (then
// from further back where they do not fill n); ascending, -1 padded. The tuners
// time the selected branch on these and on uniformly random indices.
std::vector<std::int32_t> localIndices(int batch, int seqLen, int heads, int n, int block, std::mt19937 &rng);

struct BackwardTuneResult {
  int bestSplitTokens = 0, bestSplits = 1; // 0: automatic
  int defaultSplits = 1;
  double bestMs = 0, defaultMs = 0;         // the whole backward (bwd_pre, bwd_dq, bwd_dkdv)
  int candidates = 0, failed = 0;
  std::string database;
};

// Called after each candidate: done of total, its split length (0: automatic),
// the splits it gives, its time (< 0: it failed).
using BackwardTuneProgress = std::function<void(int done, int total, int splitTokens, int splits, double ms)>;

// Times the backward of `branch` (after one forward for o and lse) at batch x
// seqLen over backwardSplitCandidates, `repeats` timed launches each (median),
// and records the fastest in ctx.tuning under the bwd_dkdv spec's key; later
// backward launches without a context split use it. Throws Error.
BackwardTuneResult tuneBackward(nsajit_context &ctx, const nsajit_config *config, Branch branch, int batch,
                                int seqLen, int repeats, const BackwardTuneProgress &progress);

} // namespace nsajit::rt
