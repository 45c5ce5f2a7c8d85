// Deterministic sums over CTAs that split one output tile's work (the
// key-centric dK/dV walk, split into token segments of S <= 64 CTAs): the
// CTAs that found work add their partials into an fp32 workspace strictly in
// split order, and whichever CTA arrives last writes the output.
//
// Per tile, in global memory: a 64-bit mask of the splits that are done and a
// flag set once the workspace holds a partial. A split with work waits until
// every earlier split is done, adds the workspace (when flagged) to its
// partial, stores the sum and sets its bit; a split without work sets its bit
// at once and leaves. A split with little work still holds its SM while it
// waits for a busy earlier one, so the splits should carry similar work (see
// dkdvSplits in runtime/src/Backward.h). The
// CTA whose bit completes the mask writes the output from the workspace. The
// launcher zeroes the masks and flags before each launch. The additions happen
// in split order, so the bits of the result do not depend on timing.
//
// Progress: a split waits only for earlier splits, which lie before it along
// grid x (consecutive blocks, or a segment-major grid's earlier segments) and
// were dispatched before it (the hardware dispatches CTAs in linear block
// order), so they finish.
#pragma once

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"

#include <functional>
#include <utility>

namespace nsajit::tpl {

class OrderedSplitSum {
public:
  // Bytes of tile state (mask and flag) in the workspace.
  static constexpr int kStateBytes = 16;

  // `state`: the tile's kStateBytes (global, 8-byte aligned); `scratch`: 8
  // bytes of shared memory to broadcast thread 0's findings to the CTA.
  OrderedSplitSum(IRBuilderHelpers &h, const ThreadIds &ids, mlir::Value state, mlir::Value scratch)
      : h(h), ids(ids), state(state), scratch(scratch) {}

  // A split with work: waits (thread 0 spins with acquire loads) until every
  // split before `split` is done; returns, uniformly, whether the workspace
  // holds their sum. Ends with a barrier and an acquire fence in every thread.
  mlir::Value waitForEarlier(mlir::Value split);
  // Sets the split's bit once every thread's workspace stores are visible
  // (fence, barrier); `stored` marks the workspace as holding data. Returns,
  // uniformly, {whether this CTA completed the mask, whether the workspace
  // holds data}.
  std::pair<mlir::Value, mlir::Value> arrive(mlir::Value split, mlir::Value splits, mlir::Value stored);

  // Two consecutive fp32 workspace values at `base` + `byteOffset` (an
  // immediate: one base register serves every pair), read from L2 (not L1,
  // which another CTA's writes do not update) and written to L2.
  std::pair<mlir::Value, mlir::Value> loadPair(mlir::Value base, int byteOffset);
  void storePair(mlir::Value base, int byteOffset, mlir::Value a, mlir::Value b);

private:
  mlir::Value maskPtr();
  mlir::Value flagPtr();
  void ifThread0(const std::function<void()> &body);

  IRBuilderHelpers &h;
  const ThreadIds &ids;
  mlir::Value state, scratch;
};

} // namespace nsajit::tpl
