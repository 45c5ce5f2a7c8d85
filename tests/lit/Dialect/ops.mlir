// Round trip of every nsa op and attribute: parse, print, re-parse, and the
// same through the generic form.
// RUN: nsa-opt %s | nsa-opt | FileCheck %s
// RUN: nsa-opt %s --mlir-print-op-generic | nsa-opt | FileCheck %s
// RUN: nsa-opt %s -canonicalize -cse | FileCheck %s --check-prefix=CANON

// CHECK-LABEL: func.func @compressed
// CHECK-SAME: (%[[Q:.*]]: tensor<?x?x64x128xbf16>, %[[K:.*]]: tensor<?x?x4x128xbf16>, %[[V:.*]]: tensor<?x?x4x128xbf16>)
// CHECK: %[[O:.*]], %[[LSE:.*]] = nsa.compressed_attention %[[Q]], %[[K]], %[[V]] {gather = #nsa.compressed<block = 32, stride = 16>, scale = 1.250000e-01 : f32} : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
// CHECK: return %[[O]], %[[LSE]]
func.func @compressed(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>)
    -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>) {
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, scale = 0.125 : f32}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return %o, %lse : tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>
}

// Parameters in any order on input; printed in declaration order. No scale
// (= 1/sqrt(Dk)), with a tile.
// CHECK-LABEL: func.func @compressed_tile
// CHECK: nsa.compressed_attention %{{.*}}, %{{.*}}, %{{.*}} {gather = #nsa.compressed<block = 64, stride = 64>, tile = #nsa.tile<warps = 4, tokens = 4, kv_chunk = 64>} : (tensor<?x?x16x192xf16>, tensor<?x?x4x192xf16>, tensor<?x?x4x128xf16>) -> (tensor<?x?x16x128xf16>, tensor<?x?x16xf32>)
func.func @compressed_tile(%q: tensor<?x?x16x192xf16>, %k: tensor<?x?x4x192xf16>, %v: tensor<?x?x4x128xf16>)
    -> (tensor<?x?x16x128xf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.compressed_attention %q, %k, %v {tile = #nsa.tile<kv_chunk = 64, tokens = 4, warps = 4>, gather = #nsa.compressed<stride = 64, block = 64>}
      : (tensor<?x?x16x192xf16>, tensor<?x?x4x192xf16>, tensor<?x?x4x128xf16>) -> (tensor<?x?x16x128xf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x128xf16>, tensor<?x?x16xf32>
}

// CHECK-LABEL: func.func @selected
// CHECK-SAME: %[[I:[^:]*]]: tensor<?x?x4x16xi32>
// CHECK: nsa.selected_attention %{{.*}}, %{{.*}}, %{{.*}}, %[[I]] {gather = #nsa.selected<block = 64, count = 16>, scale = 0.0721687824 : f32, tile = #nsa.tile<warps = 4, tokens = 1, kv_chunk = 64>} : (tensor<?x?x64x192xbf16>, tensor<?x?x4x192xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x16xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
func.func @selected(%q: tensor<?x?x64x192xbf16>, %k: tensor<?x?x4x192xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x16xi32>)
    -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 16>, scale = 0.0721687836 : f32, tile = #nsa.tile<warps = 4, tokens = 1, kv_chunk = 64>}
      : (tensor<?x?x64x192xbf16>, tensor<?x?x4x192xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x16xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return %o, %lse : tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>
}

// Dynamic count dimension of the indices is allowed.
// CHECK-LABEL: func.func @selected_dynamic_n
// CHECK: nsa.selected_attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {gather = #nsa.selected<block = 16, count = 1024>} : (tensor<?x?x8x64xf16>, tensor<?x?x8x64xf16>, tensor<?x?x8x64xf16>, tensor<?x?x8x?xi32>) -> (tensor<?x?x8x64xf16>, tensor<?x?x8xf32>)
func.func @selected_dynamic_n(%q: tensor<?x?x8x64xf16>, %k: tensor<?x?x8x64xf16>, %v: tensor<?x?x8x64xf16>, %idx: tensor<?x?x8x?xi32>)
    -> (tensor<?x?x8x64xf16>, tensor<?x?x8xf32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<count = 1024, block = 16>}
      : (tensor<?x?x8x64xf16>, tensor<?x?x8x64xf16>, tensor<?x?x8x64xf16>, tensor<?x?x8x?xi32>) -> (tensor<?x?x8x64xf16>, tensor<?x?x8xf32>)
  return %o, %lse : tensor<?x?x8x64xf16>, tensor<?x?x8xf32>
}

// CHECK-LABEL: func.func @window
// CHECK: nsa.window_attention %{{.*}}, %{{.*}}, %{{.*}} {gather = #nsa.window<size = 512>, scale = 0.0883789062 : f32} : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
func.func @window(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>)
    -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>) {
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>, scale = 0.08837890625 : f32}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return %o, %lse : tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>
}

// Static batch/sequence, the extremes of every range, decode-style q (T = 1)
// against a longer KV.
// CHECK-LABEL: func.func @static_shapes
// CHECK: nsa.window_attention %{{.*}}, %{{.*}}, %{{.*}} {gather = #nsa.window<size = 16777216>, tile = #nsa.tile<warps = 8, tokens = 4, kv_chunk = 128>} : (tensor<2x1x256x256xbf16>, tensor<2x4096x8x256xbf16>, tensor<2x4096x8x64xbf16>) -> (tensor<2x1x256x64xbf16>, tensor<2x1x256xf32>)
// CHECK: nsa.window_attention %{{.*}}, %{{.*}}, %{{.*}} {gather = #nsa.window<size = 1>, tile = #nsa.tile<warps = 2, tokens = 1, kv_chunk = 16>} : (tensor<2x1x256x256xbf16>, tensor<2x4096x8x256xbf16>, tensor<2x4096x8x64xbf16>) -> (tensor<?x?x256x64xbf16>, tensor<?x1x256xf32>)
// CHECK: nsa.compressed_attention %{{.*}}, %{{.*}}, %{{.*}} {gather = #nsa.compressed<block = 4096, stride = 1>} : (tensor<2x1x256x256xbf16>, tensor<2x4096x8x256xbf16>, tensor<2x4096x8x64xbf16>) -> (tensor<2x1x256x64xbf16>, tensor<2x1x256xf32>)
// CHECK: nsa.selected_attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {gather = #nsa.selected<block = 128, count = 1>, tile = #nsa.tile<warps = 2, tokens = 1, kv_chunk = 128>} : (tensor<2x1x256x256xbf16>, tensor<2x4096x8x256xbf16>, tensor<2x4096x8x64xbf16>, tensor<2x1x8x1xi32>) -> (tensor<2x1x256x64xbf16>, tensor<2x1x256xf32>)
func.func @static_shapes(%q: tensor<2x1x256x256xbf16>, %k: tensor<2x4096x8x256xbf16>, %v: tensor<2x4096x8x64xbf16>, %idx: tensor<2x1x8x1xi32>) {
  %o0, %l0 = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 16777216>, tile = #nsa.tile<warps = 8, tokens = 4, kv_chunk = 128>}
      : (tensor<2x1x256x256xbf16>, tensor<2x4096x8x256xbf16>, tensor<2x4096x8x64xbf16>) -> (tensor<2x1x256x64xbf16>, tensor<2x1x256xf32>)
  %o1, %l1 = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 1>, tile = #nsa.tile<warps = 2, tokens = 1, kv_chunk = 16>}
      : (tensor<2x1x256x256xbf16>, tensor<2x4096x8x256xbf16>, tensor<2x4096x8x64xbf16>) -> (tensor<?x?x256x64xbf16>, tensor<?x1x256xf32>)
  %o2, %l2 = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 4096, stride = 1>}
      : (tensor<2x1x256x256xbf16>, tensor<2x4096x8x256xbf16>, tensor<2x4096x8x64xbf16>) -> (tensor<2x1x256x64xbf16>, tensor<2x1x256xf32>)
  %o3, %l3 = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 128, count = 1>, tile = #nsa.tile<warps = 2, tokens = 1, kv_chunk = 128>}
      : (tensor<2x1x256x256xbf16>, tensor<2x4096x8x256xbf16>, tensor<2x4096x8x64xbf16>, tensor<2x1x8x1xi32>) -> (tensor<2x1x256x64xbf16>, tensor<2x1x256xf32>)
  return
}

// The ops are pure: unused results are removed by canonicalization.
// CANON-LABEL: func.func @static_shapes
// CANON-NOT: nsa.
// CANON: return
