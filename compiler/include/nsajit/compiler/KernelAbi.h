// The parameter list every generated forward kernel takes, shared by the code
// generator (templates/) and the launcher (runtime/). Change both together:
// the kernel's parameter order is this struct's field order.
#pragma once

#include <cstdint>

namespace nsajit {

// Strides are in elements of the tensor's own type; the last dimension of
// every tensor is contiguous (stride 1), which the runtime checks.
struct TensorStrides3 {
  std::int64_t batch = 0, token = 0, head = 0;
};

struct ForwardKernelArgs {
  std::uint64_t q = 0;     // [B, T, HQ, Dk]  bf16/fp16
  std::uint64_t k = 0;     // [B, Tkv, H, Dk] bf16/fp16
  std::uint64_t v = 0;     // [B, Tkv, H, Dv] bf16/fp16
  std::uint64_t idx = 0;   // [B, T, H, n] int32 (selected branch; 0 otherwise)
  std::uint64_t o = 0;     // [B, T, HQ, Dv]  bf16/fp16
  std::uint64_t lse = 0;   // [B, T, HQ] fp32, natural log; -inf where a row sees no key
  // [B, H, T] uint8, or 0 (selected branch): the hand-over of the two-kernel
  // schedule (selectedUnionLimit). The warp-specialised union kernel writes 1
  // for the tokens of every tile it computed and 0 for those of the tiles it
  // left (its union was larger than the limit); the kernel launched after it
  // computes only the CTAs whose tokens are not all 1. 0: every kernel
  // computes all its tokens.
  std::uint64_t tokenDone = 0;
  TensorStrides3 qs, ks, vs, idxs, os, lses;
  std::int32_t seqLen = 0;   // T
  std::int32_t kvLen = 0;    // Tkv: T (selected, window) or Tc (compressed)
};

// Number of scalar kernel parameters, in order: 7 pointers, 18 strides, 2 ints.
inline constexpr int kForwardKernelParamCount = 7 + 18 + 2;

// Grid: x = ceil(T / tile.tokensPerCta), y = H (KV heads), z = B.
// Block: threadsPerCta(spec); dynamic shared memory: sharedMemoryBytes(spec).

// Backward kernels of a branch c (o = sum_c g_c * o_c, gates optional):
//   bwd_pre  (grid as forward): dgate = rowsum(dO * o_c); delta = gate * dgate.
//   bwd_dq   (grid as forward): recompute P from lse, dP = gate * dO V^T,
//            dS = P (dP - delta), dq = scale * dS K.
//   bwd_dkdv (grid x = ceil(Tkv / tile.kvChunk) x S, y = H, z = B): for a
//            chunk of keys, over every query row that sees them: dv = sum P^T
//            (gate dO), dk = scale * sum dS^T q. S >= 1 CTAs (adjacent along x)
//            split the chunk's query tokens into segments; with S > 1 they add
//            their fp32 partial sums in split order through `workspace`
//            (dkdvWorkspaceBytes; its state zeroed before each launch) and
//            the last to arrive writes dk/dv. Deterministic: the
//            sums are added in one fixed order (no floating-point atomics).
//            Selected branch with selectionMapWords > 0: bwd_pre sets bit
//            t % 32 of word t / 32 of row (b, h, block) of the selection map
//            (at the start of `workspace`, zeroed before bwd_pre) for every
//            block token t lists, and bwd_dkdv walks only those tokens; with 0
//            it scans every token's index list instead.
// Unused pointers may be 0; gate = 0 means all gates are 1 (then dgate is not
// written). lse, delta, gate, dgate: [B, T, HQ] fp32; dq/dk/dv: like q/k/v.
struct BackwardKernelArgs {
  std::uint64_t q = 0, k = 0, v = 0, idx = 0, o = 0, lse = 0, dout = 0, gate = 0, delta = 0;
  std::uint64_t dq = 0, dk = 0, dv = 0, dgate = 0;
  std::uint64_t workspace = 0; // bwd_dkdv with S > 1 only
  // [B, H, T] uint8, or 0: the selected dQ kernels' two-kernel schedule, as the
  // forward's (ForwardKernelArgs::tokenDone): its wgmma union tile computes the
  // tiles whose union has at most selectedUnionLimit blocks, the default dQ
  // kernel after it the CTAs whose tokens are not all done.
  std::uint64_t tokenDone = 0;
  TensorStrides3 qs, ks, vs, idxs, os, lses, douts, gates, deltas, dqs, dks, dvs, dgates;
  std::int32_t seqLen = 0;
  std::int32_t kvLen = 0;
  std::int32_t selectionMapWords = 0; // words a selection map row (ceil(T / 32)); 0: no map
};

// 15 pointers, 39 strides, 3 ints.
inline constexpr int kBackwardKernelParamCount = 15 + 39 + 3;

// The selected branch's selection map: a row of `words` 32-bit words (a bit
// per query token) for each (batch, KV head, selection block), padded to 256
// bytes. It grows with T^2 (8 MiB per batch and KV head at T = 64k, l' = 64),
// so the runtime uses it up to a limit (nsajit_context_set_selection_map_limit).
inline std::uint64_t selectionMapBytes(int batch, int kvHeads, int blocks, int words) {
  const std::uint64_t bytes = std::uint64_t(batch) * kvHeads * blocks * words * 4;
  return (bytes + 255) / 256 * 256;
}
inline constexpr std::uint64_t kDefaultSelectionMapLimit = std::uint64_t(512) << 20;

// The bwd_dkdv workspace for S > 1 splits (after the selection map, if any): 16 bytes of state per (batch, KV
// head, key chunk) tile (a 64-bit mask of the splits done and a flag; see
// templates/OrderedSplitSum.h), padded to 256 bytes, which the launcher zeroes
// on the stream before each launch; then kvChunk x (Dk + Dv) fp32 sums a tile.
inline std::uint64_t dkdvWorkspaceStateBytes(int batch, int kvHeads, int keyChunks) {
  const std::uint64_t tiles = std::uint64_t(batch) * kvHeads * keyChunks;
  return (tiles * 16 + 255) / 256 * 256;
}
inline std::uint64_t dkdvWorkspaceBytes(int batch, int kvHeads, int keyChunks, int kvChunk, int dk, int dv) {
  const std::uint64_t tiles = std::uint64_t(batch) * kvHeads * keyChunks;
  return dkdvWorkspaceStateBytes(batch, kvHeads, keyChunks) + tiles * kvChunk * (dk + dv) * 4;
}

// The fused block scoring + top-n kernel (grid: x = T, y = H, z = B): recomputes
// p_cmp from q, kc and the compressed branch's lse, sums it over the G heads of
// the KV head, maps it to selection blocks (eq. 9), forces the initial and local
// blocks and writes the n best visible blocks, ascending, padded with -1.
// No buffer grows with T x Tc.
struct TopNKernelArgs {
  std::uint64_t q = 0;    // [B, T, HQ, Dk]
  std::uint64_t kc = 0;   // [B, Tc, H, Dk]
  std::uint64_t lse = 0;  // [B, T, HQ] fp32, from the compressed forward
  std::uint64_t idx = 0;  // [B, T, H, n] int32, written
  TensorStrides3 qs, kcs, lses, idxs;
  std::int32_t seqLen = 0;
  std::int32_t kvLen = 0; // Tc
};
inline constexpr int kTopNKernelParamCount = 4 + 12 + 2;

// Compression (pooling) kernels of one tensor x [B, T, H, D] into y [B, Tc, H, D]:
//   pool     (grid Tc, H, B): y[i] = sum_p w[p] x[i*d + p], w = 1/l unless weighted;
//   pool_bwd (grid T, H, B):  dx[t] = sum over the blocks i holding t of w[t - i*d] dy[i];
//   pool_dw  (grid l, 1, 1):  dw[p] = sum_{b, i, h, e} dy[b, i, h, e] x[b, i*d + p, h, e],
//                             reduced in one fixed order (deterministic).
// w/dw are fp32 [l] (w = 0: mean pooling).
struct CompressKernelArgs {
  std::uint64_t x = 0, y = 0, dy = 0, dx = 0, w = 0, dw = 0;
  TensorStrides3 xs, ys, dys, dxs;
  std::int32_t seqLen = 0, cmpLen = 0, batch = 0, heads = 0;
};
inline constexpr int kCompressKernelParamCount = 6 + 12 + 4;

// The gated combination (grid x = ceil(B T HQ Dv / 8 / threads)): out = round(
// f32(round(g_c o_c)) + f32(round(g_s o_s)) + f32(round(g_w o_w))), a thread a
// 16-byte vector of one row. o_*, out: [B, T, HQ, Dv] in the dtype; g_*: fp32
// [B, T, HQ] or 0 (a gate of 1: the term is o itself).
struct CombineKernelArgs {
  std::uint64_t oCmp = 0, oSlc = 0, oSwa = 0, gCmp = 0, gSlc = 0, gSwa = 0, out = 0;
  TensorStrides3 oCmps, oSlcs, oSwas, gCmps, gSlcs, gSwas, outs;
  std::int32_t seqLen = 0, heads = 0, batch = 0; // heads: HQ
};
inline constexpr int kCombineKernelParamCount = 7 + 21 + 3;

} // namespace nsajit
