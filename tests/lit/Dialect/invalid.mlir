// Every verifier rule of the nsa ops, one case each; the messages name the
// offending field and the allowed values.
// RUN: nsa-opt %s -split-input-file -verify-diagnostics

// q must be rank 4
func.func @f(%q: tensor<?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{operand q must be a rank-4 tensor [B, T, HQ, Dk]; got rank 3}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// k must be rank 4
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<1x?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{operand k must be a rank-4 tensor [B, Tk, H, Dk]; got rank 5}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<1x?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// v must be rank 4
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<4x128xbf16>) {
  // expected-error @+1 {{operand v must be a rank-4 tensor [B, Tk, H, Dv]; got rank 2}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// heads and head dims must be static
func.func @f(%q: tensor<?x?x?x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{q heads HQ is dynamic ('tensor<?x?x?x128xbf16>'); allowed: a static size (only B and T may be dynamic)}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x?x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// Dv must be static
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x?xbf16>) {
  // expected-error @+1 {{v head dim Dv is dynamic}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x?xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// element types identical
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{element types of q, k, v must be identical; got bf16, f16, bf16}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// element type bf16 or f16
func.func @f(%q: tensor<?x?x64x128xf32>, %k: tensor<?x?x4x128xf32>, %v: tensor<?x?x4x128xf32>) {
  // expected-error @+1 {{element type f32 is not supported; allowed: bf16, f16}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x64x128xf32>, tensor<?x?x4x128xf32>, tensor<?x?x4x128xf32>) -> (tensor<?x?x64x128xf32>, tensor<?x?x64xf32>)
  return
}

// -----

// k/v heads equal
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x8x128xbf16>) {
  // expected-error @+1 {{k heads H = 4 and v heads H = 8 differ; they must be equal}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x8x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// HQ multiple of H
func.func @f(%q: tensor<?x?x6x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{q heads HQ = 6 is not a multiple of kv heads H = 4; allowed: HQ = G * H with G in 1, 2, 4, 8, 16, 32}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x6x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x6x128xbf16>, tensor<?x?x6xf32>)
  return
}

// -----

// G supported
func.func @f(%q: tensor<?x?x12x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{GQA group G = HQ / H = 12 / 4 = 3 is not supported; allowed: 1, 2, 4, 8, 16, 32}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x12x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x12x128xbf16>, tensor<?x?x12xf32>)
  return
}

// -----

// G at most 32
func.func @f(%q: tensor<?x?x256x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{GQA group G = HQ / H = 256 / 4 = 64 is not supported; allowed: 1, 2, 4, 8, 16, 32}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x256x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x256x128xbf16>, tensor<?x?x256xf32>)
  return
}

// -----

// q/k Dk equal
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x64xbf16>, %v: tensor<?x?x4x64xbf16>) {
  // expected-error @+1 {{q head dim Dk = 128 and k head dim Dk = 64 differ; they must be equal}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x64xbf16>, tensor<?x?x4x64xbf16>) -> (tensor<?x?x64x64xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// Dk supported
func.func @f(%q: tensor<?x?x64x96xbf16>, %k: tensor<?x?x4x96xbf16>, %v: tensor<?x?x4x64xbf16>) {
  // expected-error @+1 {{head dim Dk = 96 is not supported; allowed: 64, 128, 192, 256}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x64x96xbf16>, tensor<?x?x4x96xbf16>, tensor<?x?x4x64xbf16>) -> (tensor<?x?x64x64xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// Dk supported (large)
func.func @f(%q: tensor<?x?x64x512xbf16>, %k: tensor<?x?x4x512xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{head dim Dk = 512 is not supported; allowed: 64, 128, 192, 256}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x512xbf16>, tensor<?x?x4x512xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// Dv supported
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x96xbf16>) {
  // expected-error @+1 {{value head dim Dv = 96 is not supported; allowed: 64, 128, 192, 256}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x96xbf16>) -> (tensor<?x?x64x96xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// Dv <= Dk
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x256xbf16>) {
  // expected-error @+1 {{value head dim Dv = 256 exceeds Dk = 128; allowed: Dv <= Dk}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x256xbf16>) -> (tensor<?x?x64x256xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// batch compatible
func.func @f(%q: tensor<2x?x64x128xbf16>, %k: tensor<3x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{batch B differs between q, k, v (2, 3, ?); allowed: equal (or dynamic)}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<2x?x64x128xbf16>, tensor<3x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// k/v batch compatible
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<2x?x4x128xbf16>, %v: tensor<3x?x4x128xbf16>) {
  // expected-error @+1 {{batch B differs between q, k, v (?, 2, 3); allowed: equal (or dynamic)}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x64x128xbf16>, tensor<2x?x4x128xbf16>, tensor<3x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// k/v key length compatible
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x100x4x128xbf16>, %v: tensor<?x99x4x128xbf16>) {
  // expected-error @+1 {{key length Tk differs between k (100) and v (99); allowed: equal (or dynamic)}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x100x4x128xbf16>, tensor<?x99x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// o head dim
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{result o must be [B, T, HQ, Dv] = [?, ?, 64, 128] of bf16; got 'tensor<?x?x64x64xbf16>'}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x64xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// o heads
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{result o must be [B, T, HQ, Dv] = [?, ?, 64, 128] of bf16; got 'tensor<?x?x4x128xbf16>'}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x4x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// o element type
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{result o must be [B, T, HQ, Dv] = [?, ?, 64, 128] of bf16; got 'tensor<?x?x64x128xf32>'}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xf32>, tensor<?x?x64xf32>)
  return
}

// -----

// o batch/seq
func.func @f(%q: tensor<2x7x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{result o must be [B, T, HQ, Dv] = [2, 7, 64, 128] of bf16; got 'tensor<2x8x64x128xbf16>'}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<2x7x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<2x8x64x128xbf16>, tensor<2x7x64xf32>)
  return
}

// -----

// o batch known from k
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<2x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{result o must be [B, T, HQ, Dv] = [2, ?, 64, 128] of bf16; got 'tensor<3x?x64x128xbf16>'}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<2x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<3x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// o rank
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{result o must be [B, T, HQ, Dv] = [?, ?, 64, 128] of bf16; got 'tensor<?x64x128xbf16>'}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// lse element type
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{result lse must be [B, T, HQ] = [?, ?, 64] of f32; got 'tensor<?x?x64xbf16>'}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xbf16>)
  return
}

// -----

// lse rank
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{result lse must be [B, T, HQ] = [?, ?, 64] of f32; got 'tensor<?x?x64x1xf32>'}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64x1xf32>)
  return
}

// -----

// lse seq
func.func @f(%q: tensor<?x5x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{result lse must be [B, T, HQ] = [?, 5, 64] of f32; got 'tensor<?x6x64xf32>'}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x5x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x6x64xf32>)
  return
}

// -----

// compressed block <= 4096
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{gather block l = 8192 is out of range; allowed: 1 <= l <= 4096}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 8192, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// compressed block >= 1
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{gather block l = 0 is out of range; allowed: 1 <= l <= 4096}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 0, stride = 1>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// compressed stride >= 1
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{gather stride d = 0 is out of range; allowed: 1 <= d <= l (= 32)}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 0>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// compressed stride <= block
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{gather stride d = 64 is out of range; allowed: 1 <= d <= l (= 32)}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 64>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// compressed block % stride
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{gather block l = 32 is not a multiple of stride d = 12; allowed: l % d == 0}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 12>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// selected block supported
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x16xi32>) {
  // expected-error @+1 {{gather block l' = 48 is not supported; allowed: 16, 32, 64, 128}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 48, count = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x16xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// selected block supported (256)
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x16xi32>) {
  // expected-error @+1 {{gather block l' = 256 is not supported; allowed: 16, 32, 64, 128}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 256, count = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x16xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// selected count >= 1
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x?xi32>) {
  // expected-error @+1 {{gather count n = 0 is out of range; allowed: 1 <= n <= 1024}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 0>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x?xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// selected count <= 1024
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x2048xi32>) {
  // expected-error @+1 {{gather count n = 2048 is out of range; allowed: 1 <= n <= 1024}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 2048>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x2048xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// indices rank 4
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x16xi32>) {
  // expected-error @+1 {{operand indices must be a rank-4 i32 tensor [B, T, H, n]; got 'tensor<?x?x16xi32>'}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x16xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// indices i32
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x16xi64>) {
  // expected-error @+1 {{operand indices must be a rank-4 i32 tensor [B, T, H, n]; got 'tensor<?x?x4x16xi64>'}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x16xi64>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// indices heads == H
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x2x16xi32>) {
  // expected-error @+1 {{indices heads = 2 does not match kv heads H = 4; allowed: 4}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x2x16xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// indices n == count
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x8xi32>) {
  // expected-error @+1 {{indices last dim = 8 does not match gather count n = 16; allowed: 16}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x8xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// indices [B, T] match q
func.func @f(%q: tensor<1x8x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<1x9x4x16xi32>) {
  // expected-error @+1 {{indices [B, T] = [1, 9] does not match q [B, T] = [1, 8]}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 16>}
      : (tensor<1x8x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<1x9x4x16xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// window size >= 1
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{gather window size w = 0 is out of range; allowed: 1 <= w <= 16777216}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 0>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// window size <= 2^24
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{gather window size w = 16777217 is out of range; allowed: 1 <= w <= 16777216}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 16777217>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// scale > 0
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{scale = -0.125 is not allowed; allowed: finite and > 0 (omit it for 1/sqrt(Dk))}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, scale = -0.125 : f32}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// scale != 0
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{scale = 0 is not allowed; allowed: finite and > 0 (omit it for 1/sqrt(Dk))}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>, scale = 0.0 : f32}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// scale finite (inf)
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x16xi32>) {
  // expected-error @+1 {{scale = inf is not allowed; allowed: finite and > 0}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 16>, scale = 0x7F800000 : f32}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x16xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// scale finite (nan)
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{scale = nan is not allowed; allowed: finite and > 0}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, scale = 0x7FC00000 : f32}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// scale is f32
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{attribute 'scale' failed to satisfy constraint: 32-bit float attribute}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, scale = 0.125 : f16}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// tile warps >= 1
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{tile warps = 0 is out of range; allowed: 1..8}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, tile = #nsa.tile<warps = 0, tokens = 1, kv_chunk = 64>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// tile warps <= 8
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{tile warps = 16 is out of range; allowed: 1..8}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>, tile = #nsa.tile<warps = 16, tokens = 1, kv_chunk = 64>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// tile tokens >= 1
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{tile tokens = 0 is out of range; allowed: >= 1}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, tile = #nsa.tile<warps = 4, tokens = 0, kv_chunk = 64>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// tile kv_chunk supported
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{tile kv_chunk = 48 is not supported; allowed: 16, 32, 64, 128}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>, tile = #nsa.tile<warps = 4, tokens = 1, kv_chunk = 48>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// tile kv_chunk supported (256)
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{tile kv_chunk = 256 is not supported; allowed: 16, 32, 64, 128}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, tile = #nsa.tile<warps = 4, tokens = 1, kv_chunk = 256>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// tile tokens * G <= warps * 16
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{tile tokens * G = 2 * 16 = 32 exceeds warps * 16 = 16; allowed: tokens * G <= warps * 16}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, tile = #nsa.tile<warps = 1, tokens = 2, kv_chunk = 64>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// tile tokens * G <= warps * 16 (window)
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{tile tokens * G = 5 * 16 = 80 exceeds warps * 16 = 64; allowed: tokens * G <= warps * 16}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>, tile = #nsa.tile<warps = 4, tokens = 5, kv_chunk = 64>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// selected: tile tokens <= 16 (the union schedule)
func.func @f(%q: tensor<?x?x4x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x16xi32>) {
  // expected-error @+1 {{tile tokens = 32 is out of range for selected attention; allowed: 1..16}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 64, count = 16>, tile = #nsa.tile<warps = 4, tokens = 32, kv_chunk = 64>}
      : (tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x16xi32>) -> (tensor<?x?x4x128xbf16>, tensor<?x?x4xf32>)
  return
}

// -----

// selected: block % kv_chunk
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>, %idx: tensor<?x?x4x16xi32>) {
  // expected-error @+1 {{gather block l' = 32 is not a multiple of tile kv_chunk = 64; allowed: l' % kv_chunk == 0}}
  %o, %lse = nsa.selected_attention %q, %k, %v, %idx {gather = #nsa.selected<block = 32, count = 16>, tile = #nsa.tile<warps = 4, tokens = 1, kv_chunk = 64>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x16xi32>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// gather is required
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{requires attribute 'gather'}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {scale = 0.125 : f32}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// gather kind matches the op
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{attribute 'gather' failed to satisfy constraint}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.window<size = 512>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// tile must be a TileAttr
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{attribute 'tile' failed to satisfy constraint}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>, tile = 4 : i64}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// Attribute syntax: every parameter is required.
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{expected ','}}
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}

// -----

// Attribute syntax: unknown parameter.
func.func @f(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>) {
  // expected-error @+1 {{duplicate or unknown struct parameter name: warp}}
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>, tile = #nsa.tile<warp = 4, tokens = 1, kv_chunk = 64>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>) -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return
}
