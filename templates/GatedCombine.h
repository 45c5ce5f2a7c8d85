// The gated combination of the three branch outputs (NSA eq. 5 as
// nsajit.torch forms it): out = round(sum over c of f32(round(g_c * o_c))),
// each gated term rounded to the dtype and the sum taken in float32 in the
// order compressed, selected, window, then rounded once. One pass over the
// three outputs instead of PyTorch's float32 temporaries. Parameters:
// CombineKernelArgs of KernelAbi.h.
#pragma once

#include "nsajit/compiler/KernelSpec.h"

#include "mlir/IR/Builders.h"
#include "mlir/Support/LogicalResult.h"

namespace nsajit::tpl {

mlir::LogicalResult buildCombineKernel(mlir::OpBuilder &builder, mlir::Location loc, const KernelSpec &spec,
                                       llvm::StringRef name);

} // namespace nsajit::tpl
