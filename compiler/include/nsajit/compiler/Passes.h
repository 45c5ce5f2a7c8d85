// nsajit's passes over the nsa dialect, and the pipeline that runs them.
#pragma once

#include <memory>

namespace mlir {
class Pass;
class OpPassManager;
} // namespace mlir

namespace nsajit {
struct KernelSpec;

// Attaches a #nsa.tile attribute (KernelConfig) to every nsa attention op that lacks one.
std::unique_ptr<mlir::Pass> createConfigureTilesPass();
// Replaces each func holding an nsa attention op by a gpu.module with the kernel
// (templates/ instantiated for the op's configuration), in LLVM/NVVM/scf/arith ops.
std::unique_ptr<mlir::Pass> createLowerToGpuPass();

// Makes every nsajit pass and the named pipeline reachable from nsa-opt:
//   --nsa-configure-tiles, --nsa-lower-to-gpu, --nsa-to-ptx{chip=sm_90a}.
void registerNsaPasses();

} // namespace nsajit
