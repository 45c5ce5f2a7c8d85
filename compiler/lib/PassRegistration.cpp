#include "nsajit/compiler/Passes.h"
#include "nsajit/compiler/Pipeline.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"

using namespace mlir;

namespace nsajit {

void registerConfigureTilesPass();
void registerLowerToGpuPass();

namespace {
struct PtxPipelineOptions : PassPipelineOptions<PtxPipelineOptions> {
  Option<std::string> chip{*this, "chip", llvm::cl::desc("sm_80 or sm_90a"), llvm::cl::init("sm_90a")};
};
} // namespace

void registerNsaPasses() {
  registerConfigureTilesPass();
  registerLowerToGpuPass();
  PassPipelineRegistration<PtxPipelineOptions>(
      "nsa-to-ptx", "The whole nsajit pipeline: nsa ops -> gpu.module -> gpu.binary with PTX",
      [](OpPassManager &pm, const PtxPipelineOptions &opts) {
        Arch arch = parseArch(opts.chip).value_or(Arch::SM90a);
        buildNsaToGpuPipeline(pm, arch);
        buildGpuToPtxPipeline(pm, arch);
      });
  PassPipelineRegistration<PtxPipelineOptions>(
      "nsa-gpu-to-ptx", "gpu.module kernels -> gpu.binary with PTX (the upstream half of nsa-to-ptx)",
      [](OpPassManager &pm, const PtxPipelineOptions &opts) {
        buildGpuToPtxPipeline(pm, parseArch(opts.chip).value_or(Arch::SM90a));
      });
}

} // namespace nsajit
