#include "nsajit/compiler/Pipeline.h"

#include "nsajit/compiler/Passes.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVMPass.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Transforms/Passes.h"

#include "nsa/NsaDialect.h"

using namespace mlir;

namespace nsajit {

void registerCompilerDialects(DialectRegistry &registry) {
  registry.insert<nsa::NsaDialect, func::FuncDialect, tensor::TensorDialect, arith::ArithDialect,
                  scf::SCFDialect, cf::ControlFlowDialect, gpu::GPUDialect, LLVM::LLVMDialect,
                  NVVM::NVVMDialect, vector::VectorDialect>();
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  // convert-gpu-to-nvvm lowers arith and cf through these interfaces.
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  registerBuiltinDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
}

void buildNsaToGpuPipeline(OpPassManager &pm, Arch arch) {
  pm.addPass(createConfigureTilesPass(arch));
  pm.addPass(createLowerToGpuPass(arch));
}

void buildGpuToPtxPipeline(OpPassManager &pm, Arch arch) {
  GpuNVVMAttachTargetOptions target;
  target.chip = archName(arch);
  // PTX ISA 8.0 is the first with sm_90a; sm_80 code uses 7.0 so older drivers load it.
  target.features = arch == Arch::SM90a ? "+ptx80" : "+ptx70";
  target.optLevel = 3;
  pm.addPass(createGpuNVVMAttachTarget(target));

  OpPassManager &gpuPm = pm.nest<gpu::GPUModuleOp>();
  gpuPm.addPass(createSCFToControlFlowPass());
  gpuPm.addPass(createArithToLLVMConversionPass());
  // Also lowers cf (through the ConvertToLLVM interfaces of loaded dialects).
  gpuPm.addPass(createConvertGpuOpsToNVVMOps());
  gpuPm.addPass(createReconcileUnrealizedCastsPass());
  gpuPm.addPass(createCanonicalizerPass());
  gpuPm.addPass(createCSEPass());

  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa"; // PTX text; the driver JIT-compiles it to SASS
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

std::string extractPtx(ModuleOp module) {
  std::string ptx;
  module.walk([&](gpu::BinaryOp bin) {
    for (Attribute a : bin.getObjects())
      if (auto obj = dyn_cast<gpu::ObjectAttr>(a))
        ptx += obj.getObject().getValue().str();
  });
  return ptx;
}

} // namespace nsajit
