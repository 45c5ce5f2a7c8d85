// nsa-configure-tiles: choose the tile of every nsa attention op (KernelConfig).
// Kept apart from the lowering so a tuner can replace the choice and the
// lowering stays deterministic for a given #nsa.tile.
#include "nsajit/compiler/Passes.h"
#include "nsajit/compiler/SpecIR.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

#include "nsa/NsaOps.h"

using namespace mlir;

namespace nsajit {
namespace {

struct ConfigureTilesPass : PassWrapper<ConfigureTilesPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(ConfigureTilesPass)
  ConfigureTilesPass() = default;
  ConfigureTilesPass(const ConfigureTilesPass &other) : PassWrapper(other) {}
  Option<std::string> chip{*this, "chip", llvm::cl::desc("target GPU: sm_80 (mma.sync) or sm_90a (wgmma where a tile allows)"),
                           llvm::cl::init("sm_90a")};
  StringRef getArgument() const override { return "nsa-configure-tiles"; }
  StringRef getDescription() const override {
    return "Attach a #nsa.tile (warps, tokens per CTA, kv chunk) to nsa attention ops that lack one";
  }
  void runOnOperation() override {
    std::optional<Arch> arch = parseArch(chip);
    if (!arch) {
      getOperation().emitError("nsa-configure-tiles: chip = '")
          << chip.getValue() << "' is unknown; allowed: sm_80, sm_90a";
      return signalPassFailure();
    }
    getOperation().walk([&](nsa::AttentionOpInterface op) {
      if (op.getTileAttribute())
        return;
      KernelSpec spec;
      std::string error;
      if (!specFromOp(op, *arch, spec, error)) {
        op->emitOpError("cannot configure tiles: ") << error;
        return signalPassFailure();
      }
      TileConfig t = defaultTileConfig(spec);
      op.setTileAttribute(nsa::TileAttr::get(op->getContext(), t.warps, t.tokensPerCta, t.kvChunk));
    });
  }
};

} // namespace

std::unique_ptr<Pass> createConfigureTilesPass(Arch arch) {
  auto pass = std::make_unique<ConfigureTilesPass>();
  pass->chip = archName(arch);
  return pass;
}
void registerConfigureTilesPass() { PassRegistration<ConfigureTilesPass>(); }

} // namespace nsajit
