//===- NsaInterfaces.td - nsa op interfaces ----------------*- tablegen -*-===//

#ifndef NSA_INTERFACES_TD
#define NSA_INTERFACES_TD

include "mlir/IR/OpBase.td"

def Nsa_AttentionOpInterface : OpInterface<"AttentionOpInterface"> {
  let cppNamespace = "::mlir::nsa";
  let description = [{
    Common view of the nsa attention ops (compressed, selected, window):
    operands q, k, v; results o, lse; the gather attribute; the optional
    scale and tile attributes.
  }];
  let methods = [
    InterfaceMethod<"Query tensor [B, T, HQ, Dk].",
      "::mlir::TypedValue<::mlir::RankedTensorType>", "getQ", (ins),
      [{ return $_op.getQ(); }]>,
    InterfaceMethod<"Key tensor [B, Tk, H, Dk].",
      "::mlir::TypedValue<::mlir::RankedTensorType>", "getK", (ins),
      [{ return $_op.getK(); }]>,
    InterfaceMethod<"Value tensor [B, Tk, H, Dv].",
      "::mlir::TypedValue<::mlir::RankedTensorType>", "getV", (ins),
      [{ return $_op.getV(); }]>,
    InterfaceMethod<"Output tensor [B, T, HQ, Dv].",
      "::mlir::TypedValue<::mlir::RankedTensorType>", "getO", (ins),
      [{ return $_op.getO(); }]>,
    InterfaceMethod<"Log-sum-exp tensor [B, T, HQ] (f32).",
      "::mlir::TypedValue<::mlir::RankedTensorType>", "getLse", (ins),
      [{ return $_op.getLse(); }]>,
    InterfaceMethod<[{The gather attribute (CompressedGatherAttr,
      SelectedGatherAttr or WindowGatherAttr).}],
      "::mlir::Attribute", "getGatherAttribute", (ins),
      [{ return $_op.getGatherAttr(); }]>,
    InterfaceMethod<"The scale attribute, or null when absent (1/sqrt(Dk)).",
      "::mlir::FloatAttr", "getScaleAttribute", (ins),
      [{ return $_op.getScaleAttr(); }]>,
    InterfaceMethod<"The tile attribute, or null when absent.",
      "::mlir::nsa::TileAttr", "getTileAttribute", (ins),
      [{ return $_op.getTileAttr(); }]>,
    InterfaceMethod<"Sets (or, with null, removes) the tile attribute.",
      "void", "setTileAttribute", (ins "::mlir::nsa::TileAttr":$tile),
      [{ if (tile) $_op.setTileAttr(tile); else $_op.removeTileAttr(); }]>,
  ];
  let extraClassDeclaration = [{
    /// The softmax scale: the `scale` attribute, else 1/sqrt(Dk).
    double getEffectiveScale() {
      if (::mlir::FloatAttr s = getScaleAttribute())
        return s.getValueAsDouble();
      int64_t dk = getQ().getType().getShape().back();
      return 1.0 / std::sqrt(static_cast<double>(dk));
    }
  }];
}

#endif // NSA_INTERFACES_TD
