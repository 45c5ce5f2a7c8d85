// Deterministic sums over CTAs that split one output tile's work (the
// key-centric dK/dV walk, split into token segments): the CTAs of a tile add
// their partials into an fp32 workspace strictly in split order, one after the
// other, through a per-tile counter in global memory (a serial split-K fixup).
//
// Counter word: bits 0-29 the split whose turn it is, bit 30 set once the
// workspace holds a partial. Split s waits for turn s; the last split reads the
// sum, writes the output and resets the counter to 0, so the counters stay zero
// between launches (allocate them zeroed). The order of the additions is fixed,
// so the bits of the result do not depend on timing.
//
// Progress: a CTA waits only for the splits before it, and the splits of a
// tile must be consecutive blocks along grid x, so those were dispatched
// before it (the hardware dispatches CTAs in linear block order) and finish.
#pragma once

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"

#include <utility>

namespace nsajit::tpl {

class OrderedSplitSum {
public:
  // `counter`: the tile's i32 counter (global); `turnSlot`: 4 bytes of shared
  // memory to broadcast the counter to the CTA.
  OrderedSplitSum(IRBuilderHelpers &h, const ThreadIds &ids, mlir::Value counter, mlir::Value turnSlot)
      : h(h), ids(ids), counter(counter), turnSlot(turnSlot) {}

  // Thread 0 spins (acquire loads, short sleeps) until it is split `split`'s
  // turn; then the whole CTA gets, uniformly, whether the workspace holds the
  // sum of the earlier splits. Ends with a CTA barrier.
  mlir::Value waitForTurn(mlir::Value split);
  // Hands the turn on: every thread's workspace stores become visible (fence,
  // barrier), then thread 0 publishes `next` (the next split, with bit 30 if
  // the workspace now holds data; 0 after the last split) with a release store.
  void passTurn(mlir::Value next);

  // The counter word for `split` + 1, marking the workspace as holding data.
  mlir::Value nextTurn(mlir::Value split, mlir::Value holdsData);

  // Two consecutive fp32 workspace values, read from L2 (not L1, which another
  // CTA's writes do not update) and written to L2.
  std::pair<mlir::Value, mlir::Value> loadPair(mlir::Value ptr);
  void storePair(mlir::Value ptr, mlir::Value a, mlir::Value b);

private:
  IRBuilderHelpers &h;
  const ThreadIds &ids;
  mlir::Value counter, turnSlot;
};

} // namespace nsajit::tpl
