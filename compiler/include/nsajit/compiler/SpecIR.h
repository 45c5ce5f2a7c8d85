// KernelSpec <-> nsa IR. The IR is the compiler's input: one func per kernel
// holding one nsa attention op on tensors [B, T, HQ, D].
#pragma once

#include "nsajit/compiler/KernelSpec.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>

namespace nsajit {

// Discardable attribute on an nsa attention op naming which of the branch's
// kernels to generate: "fwd" (default when absent), "bwd_pre", "bwd_dq", "bwd_dkdv".
inline constexpr const char *kKernelPassAttrName = "nsa.kernel";

// Builds `func.func @<kernelName>` around the branch's nsa op. Kernels do not
// depend on the number of KV heads (it is the grid's y), so the IR uses H = 1.
mlir::OwningOpRef<mlir::ModuleOp> buildSpecModule(mlir::MLIRContext *ctx, const KernelSpec &spec);

// Reads the spec back from an nsa attention op (and its #nsa.tile, if any).
// On failure returns false and sets `error`.
bool specFromOp(mlir::Operation *op, Arch arch, KernelSpec &spec, std::string &error);

} // namespace nsajit
