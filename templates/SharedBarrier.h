// An mbarrier in shared memory (sm_90): the hand-off between the warps of a
// CTA that do different work (a producer warp staging K/V chunks, consumer
// warpgroups computing on them) without a barrier every warp of the CTA meets.
//
// A barrier counts arrivals; when `count` arrived, its phase completes and the
// next begins. wait(parity) spins until the phase of that parity completed: the
// k-th use of a barrier (k = 0, 1, ...) waits for parity k % 2. Arrivals
// release and waits acquire at CTA scope, so shared stores before an arrival
// are visible after the wait.
#pragma once

#include "IRBuilderHelpers.h"

namespace nsajit::tpl {

class SharedBarrier {
public:
  // The barrier's 8 bytes at `byteOffset` (a multiple of 8) of shared memory `smem`.
  SharedBarrier(IRBuilderHelpers &h, mlir::Value smem, mlir::Value byteOffset);

  // One thread sets the expected arrival count; a barrier every thread of the
  // CTA meets must follow before any other use.
  void init(int count);
  void arrive();
  // An arrival once every cp.async this thread issued so far has landed (the
  // thread goes on at once; `count` includes these arrivals).
  void arriveWhenCopiesLand();
  void wait(mlir::Value parity);

private:
  IRBuilderHelpers &h;
  mlir::Value address; // 32-bit shared-window address
};

} // namespace nsajit::tpl
