//===- nsa-opt.cpp - mlir-opt style driver for nsajit -----------*- C++ -*-===//
//
// Registers the nsa dialect, the upstream dialects and passes nsajit's
// lowering uses (func, arith, scf, cf, gpu, nvvm, nvgpu, llvm, math, memref,
// vector, tensor, ub, index), the NVVM target and LLVM IR translations needed
// by gpu-module-to-binary, and nsajit's passes (--nsa-*).
//
//===----------------------------------------------------------------------===//

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVM.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVM.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/Extensions/InlinerExtension.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Index/IR/IndexDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/UB/IR/UBOps.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/Format.h"

#include "nsa/NsaDialect.h"
#include "nsa/NsaOps.h"

#ifdef NSAJIT_HAVE_PASSES
#include "nsajit/compiler/Passes.h"
#endif

namespace {
/// --nsa-test-helpers: exercises the dialect's C++ helpers for lit
/// (tests/lit/Dialect/helpers.mlir): getAttentionShape, getGatherAttr,
/// AttentionOpInterface, checkTile and the result-type-inferring builders.
struct NsaTestHelpersPass
    : mlir::PassWrapper<NsaTestHelpersPass,
                        mlir::OperationPass<mlir::func::FuncOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(NsaTestHelpersPass)
  llvm::StringRef getArgument() const final { return "nsa-test-helpers"; }
  llvm::StringRef getDescription() const final {
    return "Test pass: report nsa helper results as remarks";
  }
  void runOnOperation() override {
    using namespace mlir;
    getOperation().walk([&](nsa::AttentionOpInterface op) {
      FailureOr<nsa::AttentionShape> shape =
          nsa::getAttentionShape(op.getOperation());
      if (failed(shape)) {
        op->emitRemark("no attention shape");
        return;
      }
      // Rebuild the op with the inferring builder: same result types?
      OpBuilder b(op);
      Operation *rebuilt = nullptr;
      if (auto c = dyn_cast<nsa::CompressedAttentionOp>(op.getOperation()))
        rebuilt = nsa::CompressedAttentionOp::create(
            b, c.getLoc(), c.getQ(), c.getK(), c.getV(), c.getGather(),
            c.getScaleAttr(), c.getTileAttr());
      else if (auto s = dyn_cast<nsa::SelectedAttentionOp>(op.getOperation()))
        rebuilt = nsa::SelectedAttentionOp::create(
            b, s.getLoc(), s.getQ(), s.getK(), s.getV(), s.getIndices(),
            s.getGather(), s.getScaleAttr(), s.getTileAttr());
      else if (auto w = dyn_cast<nsa::WindowAttentionOp>(op.getOperation()))
        rebuilt = nsa::WindowAttentionOp::create(
            b, w.getLoc(), w.getQ(), w.getK(), w.getV(), w.getGather(),
            w.getScaleAttr(), w.getTileAttr());
      bool sameTypes = rebuilt && rebuilt->getResultTypes() == op->getResultTypes();
      bool verifies = rebuilt && succeeded(mlir::verify(rebuilt));
      if (rebuilt)
        rebuilt->erase();

      // A candidate tile as a tuner would try it.
      auto candidate = nsa::TileAttr::get(op->getContext(), 4, 4, 64);
      std::string tileMsg =
          nsa::checkTile(*shape, nsa::getGatherAttr(op.getOperation()), candidate);

      std::string text;
      llvm::raw_string_ostream os(text);
      os << "HQ=" << shape->HQ << " H=" << shape->H << " G=" << shape->G
         << " Dk=" << shape->Dk << " Dv=" << shape->Dv
         << " elt=" << shape->elementType << " gather=" << op.getGatherAttribute()
         << " scale=" << llvm::format("%.6f", op.getEffectiveScale())
         << " tile=" << (op.getTileAttribute() ? "yes" : "no")
         << " rebuilt=" << (sameTypes && verifies ? "ok" : "mismatch")
         << " tile4x4x64=" << (tileMsg.empty() ? std::string("ok") : tileMsg);
      op->emitRemark(text);
    });
  }
};
} // namespace

static void registerNsaOptPasses() {
  mlir::PassRegistration<NsaTestHelpersPass>();
  // canonicalize, cse, inline, symbol-dce, loop-invariant-code-motion, ...
  mlir::registerTransformsPasses();
  // gpu-module-to-binary, nvvm-attach-target, gpu-kernel-outlining, ...
  mlir::registerGPUPasses();
  // Conversions on the path nsa -> gpu/nvvm -> llvm.
  mlir::registerSCFToControlFlowPass();          // convert-scf-to-cf
  mlir::registerConvertGpuOpsToNVVMOps();        // convert-gpu-to-nvvm
  mlir::registerArithToLLVMConversionPass();     // convert-arith-to-llvm
  mlir::registerConvertControlFlowToLLVMPass();  // convert-cf-to-llvm
  mlir::registerConvertFuncToLLVMPass();         // convert-func-to-llvm
  mlir::registerConvertMathToLLVMPass();         // convert-math-to-llvm
  mlir::registerFinalizeMemRefToLLVMConversionPass(); // finalize-memref-to-llvm
  mlir::registerConvertIndexToLLVMPass();        // convert-index-to-llvm
  mlir::registerConvertVectorToLLVMPass();       // convert-vector-to-llvm
  mlir::registerConvertVectorToSCF();            // convert-vector-to-scf
  mlir::registerConvertNVVMToLLVMPass();         // convert-nvvm-to-llvm
  mlir::registerConvertNVGPUToNVVMPass();        // convert-nvgpu-to-nvvm
  mlir::registerUBToLLVMConversionPass();        // convert-ub-to-llvm
  mlir::registerConvertToLLVMPass();             // convert-to-llvm
  mlir::registerReconcileUnrealizedCastsPass();  // reconcile-unrealized-casts
#ifdef NSAJIT_HAVE_PASSES
  nsajit::registerNsaPasses(); // --nsa-configure-tiles, --nsa-lower-to-gpu, ...
#endif
}

int main(int argc, char **argv) {
  registerNsaOptPasses();

  mlir::DialectRegistry registry;
  registry.insert<mlir::nsa::NsaDialect, mlir::func::FuncDialect,
                  mlir::arith::ArithDialect, mlir::scf::SCFDialect,
                  mlir::cf::ControlFlowDialect, mlir::gpu::GPUDialect,
                  mlir::NVVM::NVVMDialect, mlir::nvgpu::NVGPUDialect,
                  mlir::LLVM::LLVMDialect, mlir::math::MathDialect,
                  mlir::memref::MemRefDialect, mlir::vector::VectorDialect,
                  mlir::tensor::TensorDialect, mlir::ub::UBDialect,
                  mlir::index::IndexDialect>();

  // Dialect -> LLVM pattern interfaces (used by convert-to-llvm and by
  // convert-gpu-to-nvvm for the ops inside gpu.module).
  mlir::arith::registerConvertArithToLLVMInterface(registry);
  mlir::cf::registerConvertControlFlowToLLVMInterface(registry);
  mlir::registerConvertFuncToLLVMInterface(registry);
  mlir::registerConvertMathToLLVMInterface(registry);
  mlir::registerConvertMemRefToLLVMInterface(registry);
  mlir::index::registerConvertIndexToLLVMInterface(registry);
  mlir::vector::registerConvertVectorToLLVMInterface(registry);
  mlir::registerConvertNVVMToLLVMInterface(registry);
  mlir::ub::registerConvertUBToLLVMInterface(registry);
  mlir::func::registerInlinerExtension(registry);

  // gpu-module-to-binary with #nvvm.target: target attribute interface and
  // the translations to LLVM IR.
  mlir::NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  mlir::registerBuiltinDialectTranslation(registry);
  mlir::registerLLVMDialectTranslation(registry);
  mlir::registerNVVMDialectTranslation(registry);
  mlir::registerGPUDialectTranslation(registry);

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "nsajit optimizer driver (nsa dialect + lowering passes)\n",
      registry));
}
