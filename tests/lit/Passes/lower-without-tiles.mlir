// RUN: nsa-opt %s --nsa-lower-to-gpu --verify-diagnostics

// The lowering is deterministic for a given #nsa.tile and does not choose one.
func.func @untiled(%q: tensor<?x?x4x64xf16>, %k: tensor<?x?x1x64xf16>, %v: tensor<?x?x1x64xf16>)
    -> (tensor<?x?x4x64xf16>, tensor<?x?x4xf32>) {
  // expected-error @+1 {{has no #nsa.tile; run nsa-configure-tiles first}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 64>}
      : (tensor<?x?x4x64xf16>, tensor<?x?x1x64xf16>, tensor<?x?x1x64xf16>)
      -> (tensor<?x?x4x64xf16>, tensor<?x?x4xf32>)
  return %o, %lse : tensor<?x?x4x64xf16>, tensor<?x?x4xf32>
}
