// The pass order, written in one place: gpu.module (LLVM/NVVM/scf/arith ops)
// -> LLVM dialect -> PTX through LLVM's NVPTX back end (no CUDA toolkit).
#pragma once

#include "nsajit/compiler/KernelSpec.h"

#include <string>

namespace mlir {
class MLIRContext;
class ModuleOp;
class OpPassManager;
class DialectRegistry;
} // namespace mlir

namespace nsajit {

// Every dialect and translation interface the pipeline needs.
void registerCompilerDialects(mlir::DialectRegistry &registry);

// nsa ops -> tiled -> gpu.module with the kernels for `arch` (nsajit's own passes).
void buildNsaToGpuPipeline(mlir::OpPassManager &pm, Arch arch);
// gpu.module -> NVVM/LLVM dialect -> gpu.binary holding PTX for `arch`.
void buildGpuToPtxPipeline(mlir::OpPassManager &pm, Arch arch);

// The PTX text inside the module's gpu.binary ops ("" when there is none).
std::string extractPtx(mlir::ModuleOp module);

} // namespace nsajit
