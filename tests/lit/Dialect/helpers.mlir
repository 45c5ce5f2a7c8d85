// The dialect's C++ helpers (getAttentionShape, getGatherAttr,
// AttentionOpInterface incl. getEffectiveScale, checkTile, and the builders
// that infer o/lse types), via nsa-opt's --nsa-test-helpers test pass.
// RUN: nsa-opt %s --nsa-test-helpers -verify-diagnostics -o /dev/null

func.func @f(%q: tensor<?x?x64x192xbf16>, %k: tensor<?x?x4x192xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x16xi32>,
             %q2: tensor<1x7x8x64xf16>, %k2: tensor<1x7x8x64xf16>) {
  // explicit scale 0.125
  // expected-remark @below {{HQ=64 H=4 G=16 Dk=192 Dv=128 elt=bf16 gather=#nsa.compressed<block = 32, stride = 16> scale=0.125000 tile=no rebuilt=ok tile4x4x64=ok}}
  %o0, %l0 = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, scale = 0.125 : f32}
      : (tensor<?x?x64x192xbf16>, tensor<?x?x4x192xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  // scale absent: 1/sqrt(192) = 0.072169; a 4-token tile is the union schedule.
  // expected-remark @below {{HQ=64 H=4 G=16 Dk=192 Dv=128 elt=bf16 gather=#nsa.selected<block = 64, count = 16> scale=0.072169 tile=yes rebuilt=ok tile4x4x64=ok}}
  %o1, %l1 = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 16>, tile = #nsa.tile<warps = 4, tokens = 1, kv_chunk = 64>}
      : (tensor<?x?x64x192xbf16>, tensor<?x?x4x192xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x16xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  // The inferring builder gives static o [1, 7, 8, 64]; this op declares [?, ?, 8, 64].
  // expected-remark @below {{HQ=8 H=8 G=1 Dk=64 Dv=64 elt=f16 gather=#nsa.window<size = 512> scale=0.125000 tile=no rebuilt=mismatch tile4x4x64=ok}}
  %o2, %l2 = nsa.window_attention %q2, %k2, %k2 {gather = #nsa.window<size = 512>}
      : (tensor<1x7x8x64xf16>, tensor<1x7x8x64xf16>, tensor<1x7x8x64xf16>) -> (tensor<?x?x8x64xf16>, tensor<1x7x8xf32>)
  return
}
