// The hand-over of the selected branch's two-kernel schedules (KernelAbi.h,
// tokenDone: [B, H, T] bytes): the first kernel (a wgmma union tile) writes 1
// for the tokens of every tile it computed and 0 for those of the tiles whose
// union it left to the second kernel, which then computes only the CTAs whose
// tokens are not all 1. A null pointer: every kernel computes all its tokens.
#pragma once

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"

#include <cstdint>
#include <limits>

namespace nsajit::tpl {

class TokenDone {
public:
  // The flags of (batch, kvHead) (grid y is the KV heads), tokens below seqLen.
  TokenDone(IRBuilderHelpers &h, mlir::Value flags, mlir::Value batch, mlir::Value kvHead, mlir::Value seqLen)
      : h(h), flags(flags), batch(batch), kvHead(kvHead), seqLen(seqLen) {}

  // Whether the schedule runs (the pointer is not null).
  mlir::Value present() { return h.nonNull(flags); }
  // The first kernel: the largest union it computes (`limit`, or any without
  // the schedule), and whether it leaves a tile whose union has `unionBlocks` blocks.
  mlir::Value unionLimit(int limit) {
    return h.select(present(), h.c32(limit), h.c32(std::numeric_limits<std::int32_t>::max()));
  }
  mlir::Value leaves(mlir::Value unionBlocks, int limit) { return h.gt(unionBlocks, unionLimit(limit)); }
  // The first kernel: threads 0 .. tokens - 1 of `ids` write `computed` for
  // tokens t0 .. t0 + tokens - 1 (nothing without the schedule).
  void mark(const ThreadIds &ids, mlir::Value t0, int tokens, mlir::Value computed);
  // The second kernel: whether the first computed every token t0 .. t0 + tokens - 1
  // (false without the schedule). Uniform across the CTA.
  mlir::Value allDone(mlir::Value t0, int tokens);

private:
  mlir::Value at(mlir::Value t);

  IRBuilderHelpers &h;
  mlir::Value flags, batch, kvHead, seqLen;
};

} // namespace nsajit::tpl
