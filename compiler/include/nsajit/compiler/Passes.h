// nsajit's passes over the nsa dialect, and the pipeline that runs them.
#pragma once

#include "nsajit/compiler/KernelSpec.h"

#include <memory>

namespace mlir {
class Pass;
class OpPassManager;
} // namespace mlir

namespace nsajit {

// Attaches a #nsa.tile attribute (KernelConfig) to every nsa attention op that lacks one.
// Both passes take the target (option chip=sm_80|sm_90a): the kernels differ.
std::unique_ptr<mlir::Pass> createConfigureTilesPass(Arch arch = Arch::SM90a);
// Replaces each func holding an nsa attention op by a gpu.module with the kernel
// (templates/ instantiated for the op's configuration), in LLVM/NVVM/scf/arith ops.
std::unique_ptr<mlir::Pass> createLowerToGpuPass(Arch arch = Arch::SM90a);

// Makes every nsajit pass and the named pipeline reachable from nsa-opt:
//   --nsa-configure-tiles{chip=..}, --nsa-lower-to-gpu{chip=..}, --nsa-to-ptx{chip=sm_90a}.
void registerNsaPasses();

} // namespace nsajit
