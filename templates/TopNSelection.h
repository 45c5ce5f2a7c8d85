// The fused block scoring + top-n selection kernel (NSA eqs. 9-12), one CTA
// per (tile.tokensPerCta query tokens, KV head): the compressed attention
// probabilities of the G query heads of each token are recomputed from q, kc
// and the saved lse (mma.sync, one staged key chunk for all the tokens), summed
// over the group, mapped to selection blocks window by window, and merged by
// each token's warp into a running top-n (ties: lower block index).
// Parameters: TopNKernelArgs of KernelAbi.h.
#pragma once

#include "nsajit/compiler/KernelSpec.h"

#include "mlir/IR/Builders.h"
#include "mlir/Support/LogicalResult.h"

namespace nsajit::tpl {

mlir::LogicalResult buildTopNKernel(mlir::OpBuilder &builder, mlir::Location loc, const KernelSpec &spec,
                                    llvm::StringRef name);

} // namespace nsajit::tpl
