// The forward kernel skeleton shared by the three NSA branches.
//
// A CTA owns `tokensPerCta` query tokens of one KV head (group-centric: all G
// query heads of the group are rows of the same tile, so every staged key is
// used by the whole group). Each warp owns 16 rows (token, head) and runs a
// flash-attention loop over key chunks staged in shared memory:
//   S = Q K^T (mma.sync m16n8k16), mask, online softmax in base 2, O += P V.
// The branches differ only in which keys a chunk covers and which are visible
// to a row: see BranchKeys in ForwardAttention.cpp.
#pragma once

#include "nsajit/compiler/KernelSpec.h"

#include "mlir/IR/Builders.h"
#include "mlir/Support/LogicalResult.h"

namespace nsajit::tpl {

// Builds `gpu.func @<name>` (parameters: ForwardKernelArgs of
// KernelAbi.h) at the builder's insertion point, which must be inside a
// gpu.module body. `spec.tile` must be complete (see withDefaultTiles).
mlir::LogicalResult buildForwardKernel(mlir::OpBuilder &builder, mlir::Location loc, const KernelSpec &spec,
                                       llvm::StringRef name);

} // namespace nsajit::tpl
