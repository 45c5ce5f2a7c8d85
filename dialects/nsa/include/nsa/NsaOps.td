//===- NsaOps.td - nsa attention ops -----------------------*- tablegen -*-===//

#ifndef NSA_OPS_TD
#define NSA_OPS_TD

include "nsa/NsaDialect.td"
include "nsa/NsaAttrs.td"
include "nsa/NsaInterfaces.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

class Nsa_AttentionOp<string mnemonic, list<Trait> traits = []>
    : Nsa_Op<mnemonic, !listconcat(traits, [Pure, Nsa_AttentionOpInterface])> {
  let results = (outs AnyRankedTensor:$o, AnyRankedTensor:$lse);
  let hasVerifier = 1;
}

def Nsa_CompressedAttentionOp : Nsa_AttentionOp<"compressed_attention"> {
  let summary = "attention over compressed (block-summarised) keys/values";
  let description = [{
    `k`/`v` hold the compressed tokens `[B, Tc, H, D]`; compressed token `i`
    covers keys `[i*d, i*d + l)` and is visible to query `t` when
    `i*d + l - 1 <= t`. A query that sees no compressed token gets o = 0 and
    lse = -inf.

    ```mlir
    %o, %lse = nsa.compressed_attention %q, %k, %v
        {gather = #nsa.compressed<block = 32, stride = 16>, scale = 0.125 : f32}
        : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>)
        -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k,
                       AnyRankedTensor:$v,
                       Nsa_CompressedGatherAttr:$gather,
                       OptionalAttr<F32Attr>:$scale,
                       OptionalAttr<Nsa_TileAttr>:$tile);
  let builders = [
    // Result types o: [B, T, HQ, Dv] (q's element type), lse: [B, T, HQ] f32.
    OpBuilder<(ins "::mlir::Value":$q, "::mlir::Value":$k, "::mlir::Value":$v,
                   "CompressedGatherAttr":$gather,
                   CArg<"::mlir::FloatAttr", "{}">:$scale,
                   CArg<"TileAttr", "{}">:$tile)>
  ];
  let assemblyFormat = [{
    $q `,` $k `,` $v attr-dict `:` functional-type(operands, results)
  }];
}

def Nsa_SelectedAttentionOp : Nsa_AttentionOp<"selected_attention"> {
  let summary = "attention over the tokens of selected key/value blocks";
  let description = [{
    `indices: [B, T, H, n]` (i32) lists, per query token and KV head, the
    selected blocks (block j covers keys `[j*l', (j+1)*l')`); -1 marks an
    unused slot. Attention is causal inside the block that contains t.

    ```mlir
    %o, %lse = nsa.selected_attention %q, %k, %v, %idx
        {gather = #nsa.selected<block = 64, count = 16>}
        : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>,
           tensor<?x?x4x128xbf16>, tensor<?x?x4x16xi32>)
        -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k,
                       AnyRankedTensor:$v, AnyRankedTensor:$indices,
                       Nsa_SelectedGatherAttr:$gather,
                       OptionalAttr<F32Attr>:$scale,
                       OptionalAttr<Nsa_TileAttr>:$tile);
  let builders = [
    // Result types o: [B, T, HQ, Dv] (q's element type), lse: [B, T, HQ] f32.
    OpBuilder<(ins "::mlir::Value":$q, "::mlir::Value":$k, "::mlir::Value":$v,
                   "::mlir::Value":$indices, "SelectedGatherAttr":$gather,
                   CArg<"::mlir::FloatAttr", "{}">:$scale,
                   CArg<"TileAttr", "{}">:$tile)>
  ];
  let assemblyFormat = [{
    $q `,` $k `,` $v `,` $indices attr-dict `:`
    functional-type(operands, results)
  }];
}

def Nsa_WindowAttentionOp : Nsa_AttentionOp<"window_attention"> {
  let summary = "causal sliding-window attention";
  let description = [{
    Query `t` attends keys `max(0, t - w + 1) .. t`.

    ```mlir
    %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
        : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>)
        -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k,
                       AnyRankedTensor:$v,
                       Nsa_WindowGatherAttr:$gather,
                       OptionalAttr<F32Attr>:$scale,
                       OptionalAttr<Nsa_TileAttr>:$tile);
  let builders = [
    // Result types o: [B, T, HQ, Dv] (q's element type), lse: [B, T, HQ] f32.
    OpBuilder<(ins "::mlir::Value":$q, "::mlir::Value":$k, "::mlir::Value":$v,
                   "WindowGatherAttr":$gather,
                   CArg<"::mlir::FloatAttr", "{}">:$scale,
                   CArg<"TileAttr", "{}">:$tile)>
  ];
  let assemblyFormat = [{
    $q `,` $k `,` $v attr-dict `:` functional-type(operands, results)
  }];
}

#endif // NSA_OPS_TD
