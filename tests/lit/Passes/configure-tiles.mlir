// RUN: nsa-opt %s --nsa-configure-tiles | FileCheck %s
// RUN: nsa-opt %s --nsa-configure-tiles="chip=sm_80" | FileCheck %s --check-prefix=SM80

// The selected branch takes the union schedule: about 32 query-head rows (16 a
// warp) of at least 2 tokens, 64-key chunks at most for Dk <= 128 (32 above;
// within the selection block).
// CHECK-LABEL: func.func @selected_g16
// CHECK: nsa.selected_attention {{.*}}tile = #nsa.tile<warps = 2, tokens = 2, kv_chunk = 64>
func.func @selected_g16(%q: tensor<?x?x16x128xbf16>, %k: tensor<?x?x1x128xbf16>, %v: tensor<?x?x1x128xbf16>,
                        %i: tensor<?x?x1x16xi32>) -> (tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %i {gather = #nsa.selected<block = 64, count = 16>}
      : (tensor<?x?x16x128xbf16>, tensor<?x?x1x128xbf16>, tensor<?x?x1x128xbf16>, tensor<?x?x1x16xi32>)
      -> (tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>
}

// G = 32: two tokens in four warps; l' = 16 caps the chunk.
// CHECK-LABEL: func.func @selected_g32_small_blocks
// CHECK: tile = #nsa.tile<warps = 4, tokens = 2, kv_chunk = 16>
func.func @selected_g32_small_blocks(%q: tensor<?x?x32x64xf16>, %k: tensor<?x?x1x64xf16>, %v: tensor<?x?x1x64xf16>,
                                     %i: tensor<?x?x1x4xi32>) -> (tensor<?x?x32x64xf16>, tensor<?x?x32xf32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %i {gather = #nsa.selected<block = 16, count = 4>}
      : (tensor<?x?x32x64xf16>, tensor<?x?x1x64xf16>, tensor<?x?x1x64xf16>, tensor<?x?x1x4xi32>)
      -> (tensor<?x?x32x64xf16>, tensor<?x?x32xf32>)
  return %o, %lse : tensor<?x?x32x64xf16>, tensor<?x?x32xf32>
}

// Dense branches pack several query tokens into the rows of the CTA: on
// sm_90a 128 rows (two warpgroups for wgmma) and 64-key chunks (the
// warp-specialised kernel); on sm_80 64 rows (4 warps) and 32-key chunks for
// the two-stage pipeline.
// CHECK-LABEL: func.func @window_g4
// CHECK: tile = #nsa.tile<warps = 8, tokens = 32, kv_chunk = 64>
// SM80-LABEL: func.func @window_g4
// SM80: tile = #nsa.tile<warps = 4, tokens = 16, kv_chunk = 32>
func.func @window_g4(%q: tensor<?x?x8x128xbf16>, %k: tensor<?x?x2x128xbf16>, %v: tensor<?x?x2x128xbf16>)
    -> (tensor<?x?x8x128xbf16>, tensor<?x?x8xf32>) {
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x8x128xbf16>, tensor<?x?x2x128xbf16>, tensor<?x?x2x128xbf16>)
      -> (tensor<?x?x8x128xbf16>, tensor<?x?x8xf32>)
  return %o, %lse : tensor<?x?x8x128xbf16>, tensor<?x?x8xf32>
}

// Dk = 192: sm_90a still takes 64-key chunks (two Q tiles and a ring of three
// fit 227 KB); sm_80 caps them at 32 keys for shared memory and registers.
// CHECK-LABEL: func.func @compressed_g32_dk192
// CHECK: tile = #nsa.tile<warps = 8, tokens = 4, kv_chunk = 64>
// SM80-LABEL: func.func @compressed_g32_dk192
// SM80: tile = #nsa.tile<warps = 4, tokens = 2, kv_chunk = 32>
func.func @compressed_g32_dk192(%q: tensor<?x?x32x192xbf16>, %k: tensor<?x?x1x192xbf16>, %v: tensor<?x?x1x128xbf16>)
    -> (tensor<?x?x32x128xbf16>, tensor<?x?x32xf32>) {
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x32x192xbf16>, tensor<?x?x1x192xbf16>, tensor<?x?x1x128xbf16>)
      -> (tensor<?x?x32x128xbf16>, tensor<?x?x32xf32>)
  return %o, %lse : tensor<?x?x32x128xbf16>, tensor<?x?x32xf32>
}

// A tile chosen earlier (by the tuner) is kept.
// CHECK-LABEL: func.func @keeps_tile
// CHECK: tile = #nsa.tile<warps = 8, tokens = 8, kv_chunk = 32>
func.func @keeps_tile(%q: tensor<?x?x16x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>)
    -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.window_attention %q, %k, %v
      {gather = #nsa.window<size = 128>, tile = #nsa.tile<warps = 8, tokens = 8, kv_chunk = 32>}
      : (tensor<?x?x16x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>
}
