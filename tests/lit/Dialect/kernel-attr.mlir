// RUN: nsa-opt %s --split-input-file --verify-diagnostics | FileCheck %s

// The key-centric bwd_dkdv tile: kv_chunk = warps x 16, tokens x G a multiple of 16.
// CHECK: nsa.kernel = "bwd_dkdv"
func.func @ok(%q: tensor<?x?x16x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>, %i: tensor<?x?x1x4xi32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %i
      {gather = #nsa.selected<block = 64, count = 4>, nsa.kernel = "bwd_dkdv", tile = #nsa.tile<warps = 4, tokens = 4, kv_chunk = 64>}
      : (tensor<?x?x16x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x4xi32>)
      -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>)
  return
}

// -----

func.func @unknown_kernel(%q: tensor<?x?x4x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>) {
  // expected-error @+1 {{nsa.kernel is not allowed; allowed: "fwd", "bwd_pre", "bwd_dq", "bwd_dkdv"}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 64>, nsa.kernel = "bwd"}
      : (tensor<?x?x4x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>)
  return
}

// -----

func.func @dkdv_chunk(%q: tensor<?x?x4x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>) {
  // expected-error @+1 {{tile kv_chunk = 32 must equal warps * 16 = 64 for the bwd_dkdv kernel}}
  %o, %lse = nsa.window_attention %q, %k, %v
      {gather = #nsa.window<size = 64>, nsa.kernel = "bwd_dkdv", tile = #nsa.tile<warps = 4, tokens = 16, kv_chunk = 32>}
      : (tensor<?x?x4x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>)
  return
}

// -----

func.func @dkdv_rows(%q: tensor<?x?x4x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>) {
  // expected-error @+1 {{tile tokens * G = 12 is not allowed for the bwd_dkdv kernel; allowed: a positive multiple of 16}}
  %o, %lse = nsa.window_attention %q, %k, %v
      {gather = #nsa.window<size = 64>, nsa.kernel = "bwd_dkdv", tile = #nsa.tile<warps = 4, tokens = 3, kv_chunk = 64>}
      : (tensor<?x?x4x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>)
  return
}

// -----

func.func @topn_needs_select(%q: tensor<?x?x4x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>) {
  // expected-error @+1 {{nsa.kernel = "topn" needs nsa.select = #nsa.selected<block = l', count = n>}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, nsa.kernel = "topn"}
      : (tensor<?x?x4x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>)
  return
}

// -----

func.func @topn_on_window(%q: tensor<?x?x4x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>) {
  // expected-error @+1 {{nsa.kernel = "topn" is a kernel of the compressed branch; allowed on nsa.compressed_attention only}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 64>, nsa.kernel = "topn"}
      : (tensor<?x?x4x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>)
  return
}

// -----

func.func @forced_too_many(%q: tensor<?x?x4x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>) {
  // expected-error @+1 {{nsa.forced must be array<i64: initial, local> with initial, local >= 0 and initial + local <= n}}
  %o, %lse = nsa.compressed_attention %q, %k, %v
      {gather = #nsa.compressed<block = 32, stride = 16>, nsa.kernel = "topn",
       nsa.select = #nsa.selected<block = 64, count = 2>, nsa.forced = array<i64: 2, 2>}
      : (tensor<?x?x4x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>)
  return
}

// -----

func.func @pool_dw_needs_weights(%q: tensor<?x?x4x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>) {
  // expected-error @+1 {{nsa.kernel = "pool_dw" (the pooling weight gradient) needs nsa.weighted}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, nsa.kernel = "pool_dw"}
      : (tensor<?x?x4x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>)
  return
}
