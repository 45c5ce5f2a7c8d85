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
  StringRef getArgument() const override { return "nsa-configure-tiles"; }
  StringRef getDescription() const override {
    return "Attach a #nsa.tile (warps, tokens per CTA, kv chunk) to nsa attention ops that lack one";
  }
  void runOnOperation() override {
    getOperation().walk([&](nsa::AttentionOpInterface op) {
      if (op.getTileAttribute())
        return;
      KernelSpec spec;
      std::string error;
      if (!specFromOp(op, Arch::SM90a, spec, error)) {
        op->emitOpError("cannot configure tiles: ") << error;
        return signalPassFailure();
      }
      TileConfig t = defaultTileConfig(spec);
      op.setTileAttribute(nsa::TileAttr::get(op->getContext(), t.warps, t.tokensPerCta, t.kvChunk));
    });
  }
};

} // namespace

std::unique_ptr<Pass> createConfigureTilesPass() { return std::make_unique<ConfigureTilesPass>(); }
void registerConfigureTilesPass() { PassRegistration<ConfigureTilesPass>(); }

} // namespace nsajit
