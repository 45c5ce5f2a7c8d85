// The autotuner: times every legal tile of a forward kernel spec on the
// context's GPU (CUDA events, random inputs of the requested size) and records
// the fastest in the context's tuning database (TuningDb), which later launches
// with default tiles use.
//
// Search space (tileCandidates): warps 1..8 x kv_chunk 16..128 x query tokens
// per CTA (tokens x G filling the warps' 16-row MMA tiles; the selected branch
// takes one token per CTA), minus tiles the spec rejects or whose shared memory
// exceeds the device's opt-in limit.
#pragma once

#include "Context.h"
#include "TuningDb.h"

#include <functional>
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

// Tunes the forward kernel of `branch` for `config` (its tile fields ignored) at
// batch x seqLen on the context's GPU, `repeats` timed launches per candidate,
// and records the result in ctx.tuning. Throws Error.
TuneResult tuneForward(nsajit_context &ctx, const nsajit_config *config, Branch branch, int batch, int seqLen,
                       int repeats, const TuneProgress &progress);

} // namespace nsajit::rt
