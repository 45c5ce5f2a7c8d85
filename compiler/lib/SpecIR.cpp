#include "nsajit/compiler/SpecIR.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

#include "nsa/NsaOps.h"

#include <fmt/format.h>

using namespace mlir;

namespace nsajit {

OwningOpRef<ModuleOp> buildSpecModule(MLIRContext *ctx, const KernelSpec &spec) {
  OpBuilder b(ctx);
  Location loc = b.getUnknownLoc();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());

  Type et = spec.dtype == DType::BF16 ? Type(b.getBF16Type()) : Type(b.getF16Type());
  const int64_t dyn = ShapedType::kDynamic, G = spec.group, H = 1;
  auto qTy = RankedTensorType::get({dyn, dyn, G * H, spec.headDimQK}, et);
  auto kTy = RankedTensorType::get({dyn, dyn, H, spec.headDimQK}, et);
  auto vTy = RankedTensorType::get({dyn, dyn, H, spec.headDimV}, et);
  auto oTy = RankedTensorType::get({dyn, dyn, G * H, spec.headDimV}, et);
  auto lseTy = RankedTensorType::get({dyn, dyn, G * H}, b.getF32Type());
  auto idxTy = RankedTensorType::get({dyn, dyn, H, spec.slcCount}, b.getI32Type());

  SmallVector<Type> inputs{qTy, kTy, vTy};
  if (spec.branch == Branch::Selected) inputs.push_back(idxTy);
  auto fn = func::FuncOp::create(b, loc, spec.kernelName(), b.getFunctionType(inputs, {oTy, lseTy}));
  Block *body = fn.addEntryBlock();
  b.setInsertionPointToStart(body);
  auto args = body->getArguments();
  FloatAttr scale = spec.scale > 0 ? b.getF32FloatAttr(spec.scale) : FloatAttr();
  nsa::TileAttr tile;
  if (spec.tile.warps && spec.tile.tokensPerCta && spec.tile.kvChunk)
    tile = nsa::TileAttr::get(ctx, spec.tile.warps, spec.tile.tokensPerCta, spec.tile.kvChunk);

  Operation *op = nullptr;
  switch (spec.branch) {
  case Branch::Compressed:
    op = nsa::CompressedAttentionOp::create(b, loc, TypeRange{oTy, lseTy}, args[0], args[1], args[2],
                                            nsa::CompressedGatherAttr::get(ctx, spec.cmpBlock, spec.cmpStride),
                                            scale, tile);
    break;
  case Branch::Selected:
    op = nsa::SelectedAttentionOp::create(b, loc, TypeRange{oTy, lseTy}, args[0], args[1], args[2], args[3],
                                          nsa::SelectedGatherAttr::get(ctx, spec.slcBlock, spec.slcCount), scale,
                                          tile);
    break;
  case Branch::Window:
    op = nsa::WindowAttentionOp::create(b, loc, TypeRange{oTy, lseTy}, args[0], args[1], args[2],
                                        nsa::WindowGatherAttr::get(ctx, spec.window), scale, tile);
    break;
  }
  if (spec.pass != KernelPass::Forward)
    op->setAttr(kKernelPassAttrName, b.getStringAttr(passName(spec.pass)));
  if (isCompressionPass(spec.pass) && spec.cmpWeighted)
    op->setAttr(nsa::kWeightedAttrName, b.getUnitAttr());
  if (spec.pass == KernelPass::TopN) {
    op->setAttr(nsa::kSelectAttrName, nsa::SelectedGatherAttr::get(ctx, spec.slcBlock, spec.slcCount));
    op->setAttr(nsa::kForcedAttrName, b.getDenseI64ArrayAttr({spec.slcInitial, spec.slcLocal}));
  }
  func::ReturnOp::create(b, loc, op->getResults());
  return module;
}

bool specFromOp(Operation *op, Arch arch, KernelSpec &spec, std::string &error) {
  auto iface = dyn_cast<nsa::AttentionOpInterface>(op);
  FailureOr<nsa::AttentionShape> shape = nsa::getAttentionShape(op);
  if (!iface || failed(shape)) {
    error = "not a verified nsa attention op";
    return false;
  }
  KernelSpec s;
  s.arch = arch;
  s.dtype = shape->elementType.isBF16() ? DType::BF16 : DType::FP16;
  s.headDimQK = static_cast<int>(shape->Dk);
  s.headDimV = static_cast<int>(shape->Dv);
  s.group = static_cast<int>(shape->G);
  Attribute gather = iface.getGatherAttribute();
  if (auto c = dyn_cast<nsa::CompressedGatherAttr>(gather)) {
    s.branch = Branch::Compressed, s.cmpBlock = c.getBlock(), s.cmpStride = c.getStride();
  } else if (auto sl = dyn_cast<nsa::SelectedGatherAttr>(gather)) {
    s.branch = Branch::Selected, s.slcBlock = sl.getBlock(), s.slcCount = sl.getCount();
  } else if (auto w = dyn_cast<nsa::WindowGatherAttr>(gather)) {
    s.branch = Branch::Window, s.window = w.getSize();
  }
  if (auto passAttr = op->getAttrOfType<StringAttr>(kKernelPassAttrName)) {
    bool known = false;
    for (KernelPass k : {KernelPass::Forward, KernelPass::BackwardPreprocess, KernelPass::BackwardDQ,
                         KernelPass::BackwardDKDV, KernelPass::TopN, KernelPass::Compress,
                         KernelPass::CompressBackward, KernelPass::CompressWeightGrad, KernelPass::Combine})
      if (passAttr.getValue() == passName(k))
        s.pass = k, known = true;
    if (!known) {
      error = fmt::format("{} = \"{}\" is not a kernel of the branch; allowed: fwd, bwd_pre, bwd_dq, bwd_dkdv, "
                          "topn, pool, pool_bwd, pool_dw, combine",
                          kKernelPassAttrName, passAttr.getValue().str());
      return false;
    }
  } else if (op->hasAttr(kKernelPassAttrName)) {
    error = fmt::format("{} must be a string attribute", kKernelPassAttrName);
    return false;
  }
  s.cmpWeighted = op->hasAttr(nsa::kWeightedAttrName);
  if (auto sel = op->getAttrOfType<nsa::SelectedGatherAttr>(nsa::kSelectAttrName))
    s.slcBlock = sel.getBlock(), s.slcCount = sel.getCount();
  if (auto forced = op->getAttrOfType<DenseI64ArrayAttr>(nsa::kForcedAttrName); forced && forced.size() == 2)
    s.slcInitial = forced[0], s.slcLocal = forced[1];
  if (FloatAttr scale = iface.getScaleAttribute())
    s.scale = static_cast<float>(scale.getValueAsDouble());
  if (nsa::TileAttr t = iface.getTileAttribute())
    s.tile = {static_cast<int>(t.getWarps()), static_cast<int>(t.getTokens()), static_cast<int>(t.getKvChunk())};
  error = validate(s);
  if (!error.empty())
    return false;
  spec = s;
  return true;
}

} // namespace nsajit
