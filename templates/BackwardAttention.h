// The backward kernel skeletons shared by the three NSA branches (FlashAttention-2
// style, recomputing P from the forward's log-sum-exp, no floating-point atomics):
//   bwd_pre:  dgate = rowsum(dO * o_c), delta = gate * dgate          (per query row)
//   bwd_dq:   query-centric like the forward: dq = scale * dS K       (per query row)
//   bwd_dkdv: key-centric: a CTA owns kv_chunk keys of one KV head and walks the
//             query tokens that see them (for the selected branch: the tokens whose
//             index list names the block, found by a warp-wide ballot scan), so every
//             dk/dv element is summed in one fixed order and written once. A long
//             walk is split over S CTAs (grid x = chunks x S, chosen at launch) that
//             add their partials in split order (OrderedSplitSum.h).
// Parameters: BackwardKernelArgs of KernelAbi.h.
#pragma once

#include "nsajit/compiler/KernelSpec.h"

#include "mlir/IR/Builders.h"
#include "mlir/Support/LogicalResult.h"

namespace nsajit::tpl {

// Builds `gpu.func @<name>` for spec.pass (one of the backward passes) at the
// builder's insertion point inside a gpu.module. `spec.tile` must be complete.
mlir::LogicalResult buildBackwardKernel(mlir::OpBuilder &builder, mlir::Location loc, const KernelSpec &spec,
                                        llvm::StringRef name);

} // namespace nsajit::tpl
