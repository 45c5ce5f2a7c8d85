// nsa-lower-to-gpu: replace each func holding an nsa attention op by a kernel
// in a gpu.module, instantiating the branch's template (templates/) for the
// op's shape, gather pattern and #nsa.tile. The kernel takes raw pointers and
// element strides (compiler/include/nsajit/compiler/KernelAbi.h).
#include "nsajit/compiler/Passes.h"
#include "nsajit/compiler/SpecIR.h"

#include "templates/BackwardAttention.h"
#include "templates/Compression.h"
#include "templates/GatedCombine.h"
#include "templates/ForwardAttention.h"
#include "templates/TopNSelection.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

#include "nsa/NsaOps.h"

using namespace mlir;

namespace nsajit {
namespace {

struct LowerToGpuPass : PassWrapper<LowerToGpuPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(LowerToGpuPass)
  LowerToGpuPass() = default;
  LowerToGpuPass(const LowerToGpuPass &other) : PassWrapper(other) {}
  Option<std::string> chip{*this, "chip", llvm::cl::desc("target GPU: sm_80 (mma.sync) or sm_90a (wgmma where a tile allows)"),
                           llvm::cl::init("sm_90a")};
  StringRef getArgument() const override { return "nsa-lower-to-gpu"; }
  StringRef getDescription() const override {
    return "Lower nsa attention ops to gpu.module kernels (LLVM/NVVM/scf/arith ops, mma.sync or wgmma)";
  }
  void getDependentDialects(DialectRegistry &registry) const override {
    registry.insert<gpu::GPUDialect, LLVM::LLVMDialect, NVVM::NVVMDialect, scf::SCFDialect, arith::ArithDialect,
                    vector::VectorDialect>();
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::optional<Arch> arch = parseArch(chip);
    if (!arch) {
      module.emitError("nsa-lower-to-gpu: chip = '") << chip.getValue() << "' is unknown; allowed: sm_80, sm_90a";
      return signalPassFailure();
    }
    SmallVector<std::pair<func::FuncOp, nsa::AttentionOpInterface>> work;
    for (auto fn : module.getOps<func::FuncOp>()) {
      SmallVector<nsa::AttentionOpInterface> ops;
      fn.walk([&](nsa::AttentionOpInterface op) { ops.push_back(op); });
      if (ops.size() > 1) {
        fn.emitError("nsa-lower-to-gpu expects one nsa attention op per func (one kernel each), found ")
            << ops.size();
        return signalPassFailure();
      }
      if (ops.size() == 1)
        work.push_back({fn, ops.front()});
    }
    if (work.empty())
      return;

    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), UnitAttr::get(&getContext()));
    OpBuilder b(module.getBodyRegion());
    b.setInsertionPointToEnd(module.getBody());
    auto gpuModule = gpu::GPUModuleOp::create(b, module.getLoc(), "nsa_kernels");
    for (auto [fn, op] : work) {
      KernelSpec spec;
      std::string error;
      if (!specFromOp(op, *arch, spec, error)) {
        op->emitOpError("cannot lower: ") << error;
        return signalPassFailure();
      }
      if (!op.getTileAttribute()) {
        op->emitOpError("has no #nsa.tile; run nsa-configure-tiles first");
        return signalPassFailure();
      }
      spec = withDefaultTiles(spec);
      OpBuilder kb(gpuModule.getBodyRegion());
      kb.setInsertionPointToEnd(gpuModule.getBody());
      LogicalResult built = spec.pass == KernelPass::Forward ? tpl::buildForwardKernel(kb, op->getLoc(), spec, fn.getSymName())
                            : spec.pass == KernelPass::TopN
                                ? tpl::buildTopNKernel(kb, op->getLoc(), spec, fn.getSymName())
                            : isCompressionPass(spec.pass)
                                ? tpl::buildCompressionKernel(kb, op->getLoc(), spec, fn.getSymName())
                            : spec.pass == KernelPass::Combine
                                ? tpl::buildCombineKernel(kb, op->getLoc(), spec, fn.getSymName())
                                : tpl::buildBackwardKernel(kb, op->getLoc(), spec, fn.getSymName());
      if (failed(built))
        return signalPassFailure();
      fn.erase();
    }
  }
};

} // namespace

std::unique_ptr<Pass> createLowerToGpuPass(Arch arch) {
  auto pass = std::make_unique<LowerToGpuPass>();
  pass->chip = archName(arch);
  return pass;
}
void registerLowerToGpuPass() { PassRegistration<LowerToGpuPass>(); }

} // namespace nsajit
