// Compression of keys or values into compressed tokens (NSA's phi): mean or
// learned weighted pooling over blocks of l tokens with stride d, and its
// backward (dx and, for the weighted pooling, the weight gradient). Parameters:
// CompressKernelArgs of KernelAbi.h.
#pragma once

#include "nsajit/compiler/KernelSpec.h"

#include "mlir/IR/Builders.h"
#include "mlir/Support/LogicalResult.h"

namespace nsajit::tpl {

mlir::LogicalResult buildCompressionKernel(mlir::OpBuilder &builder, mlir::Location loc, const KernelSpec &spec,
                                           llvm::StringRef name);

} // namespace nsajit::tpl
