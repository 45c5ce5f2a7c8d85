// RUN: nsa-opt %s --split-input-file --nsa-configure-tiles --nsa-lower-to-gpu | FileCheck %s
// RUN: nsa-opt %s --split-input-file --nsa-configure-tiles="chip=sm_80" --nsa-lower-to-gpu="chip=sm_80" | FileCheck %s --check-prefix=SM80

// "nsa.kernel" picks the branch's backward kernels. bwd_pre: eight lanes per
// query row, 16-byte vectors of O and dO, partial sums met by shuffles; the
// optional gate (null pointer = gates of 1).
// CHECK-LABEL: gpu.func @nsa_window_bwd_pre
// CHECK-SAME: kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// CHECK: llvm.ptrtoint
// CHECK: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK: arith.extf %{{.*}} : vector<8xbf16> to vector<8xf32>
// CHECK: nvvm.shfl.sync bfly
// CHECK-NOT: nvvm.mma.sync
// CHECK: gpu.return
func.func @nsa_window_bwd_pre(%q: tensor<?x?x4x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>)
    -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>) {
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 64>, nsa.kernel = "bwd_pre"}
      : (tensor<?x?x4x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>)
  return %o, %lse : tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>
}

// -----

// The selected branch's bwd_pre also marks the selection map: a bit per
// (token, visible selected block), set by an atomic or (order-free).
// CHECK-LABEL: gpu.func @nsa_selected_bwd_pre
// CHECK: nvvm.shfl.sync bfly
// CHECK: llvm.atomicrmw _or %{{.*}}, %{{.*}} monotonic : !llvm.ptr<1>, i32
// SM80-LABEL: gpu.func @nsa_selected_bwd_pre
// SM80: llvm.atomicrmw _or
func.func @nsa_selected_bwd_pre(%q: tensor<?x?x16x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>,
                                %i: tensor<?x?x1x4xi32>) -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %i {gather = #nsa.selected<block = 64, count = 4>, nsa.kernel = "bwd_pre"}
      : (tensor<?x?x16x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x4xi32>)
      -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>
}

// -----

// bwd_dq: 14 pointers (the 13 tensors and the workspace), 39 strides, T, Tkv
// and the selection map's row words; mma for S, dP and dS K.
// CHECK-LABEL: gpu.func @nsa_selected_bwd_dq
// SM80-LABEL: gpu.func @nsa_selected_bwd_dq
// SM80-COUNT-3: nvvm.mma.sync
// CHECK-SAME: %{{.*}}: i32, %{{.*}}: i32, %{{.*}}: i32) kernel
// CHECK-COUNT-3: nvvm.mma.sync
func.func @nsa_selected_bwd_dq(%q: tensor<?x?x16x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>,
                               %i: tensor<?x?x1x4xi32>) -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %i {gather = #nsa.selected<block = 64, count = 4>, nsa.kernel = "bwd_dq"}
      : (tensor<?x?x16x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x4xi32>)
      -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>
}

// -----

// bwd_dkdv of the selected branch: key-centric tile (16 keys a warp, 64 query
// rows a step). The tokens that select the block come a window at a time, a
// bit per token (from the selection map, or from the index lists): popcounts,
// a warp scan (shuffles up) and the bits' positions (cttz) compact them into
// a 16-bit list in shared memory, walked in pipelined steps. sm_90a: wgmma on
// swizzled tiles (fenced for the async proxy); sm_80: mma.sync.
// The splits of a chunk (grid x / chunks) add their partials in order: wait
// for the earlier splits' bits, read and write the sums in L2, set the bit.
// The CTA order puts every head's first chunk first (its place from the
// linear CTA index: the grid's z and y sizes). Each window's walk starts at
// the pivot token, found by a binary search of the 4096-entry list (13 probes).
// CHECK-LABEL: gpu.func @nsa_selected_bwd_dkdv
// SM80-LABEL: gpu.func @nsa_selected_bwd_dkdv
// SM80-NOT: wgmma
// SM80: nvvm.mma.sync
// SM80: atom.acq_rel.gpu.global.or.b64
// CHECK-SAME: known_block_size = array<i32: 128, 1, 1>
// CHECK: nvvm.read.ptx.sreg.nctaid.z
// CHECK: nvvm.read.ptx.sreg.nctaid.y
// CHECK: nvvm.read.ptx.sreg.nctaid.x
// CHECK: llvm.intr.ctpop
// CHECK: nvvm.shfl.sync  up
// CHECK: "llvm.intr.cttz"
// CHECK: arith.trunci %{{.*}} : i32 to i16
// CHECK-COUNT-13: arith.extui %{{.*}} : i16 to i32
// CHECK: fence.proxy.async.shared::cta
// CHECK: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16
// CHECK: ld.acquire.gpu.global.b64
// CHECK: ld.global.cg.v2.f32
// CHECK: st.global.cg.v2.f32
// CHECK: atom.acq_rel.gpu.global.or.b64
func.func @nsa_selected_bwd_dkdv(%q: tensor<?x?x16x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>,
                                 %i: tensor<?x?x1x4xi32>) -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %i {gather = #nsa.selected<block = 64, count = 4>, nsa.kernel = "bwd_dkdv"}
      : (tensor<?x?x16x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x4xi32>)
      -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>
}

// -----

// The window's bwd_dq on sm_90a: S = Q K^T and dP = dO V^T over 64-key chunks
// from swizzled tiles, then dQ += dS K with dS in registers and K transposed;
// two warpgroups (8 warps, 128 query rows) for Dk = 128 too.
// CHECK-LABEL: gpu.func @nsa_window_bwd_dq
// CHECK-SAME: known_block_size = array<i32: 256, 1, 1>
// CHECK-NOT: nvvm.mma.sync
// CHECK: fence.proxy.async.shared::cta
// CHECK: wgmma.fence.sync.aligned
// CHECK: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16
// CHECK: wgmma.commit_group.sync.aligned
// CHECK: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}, p, 1, 1, 1;
// SM80-LABEL: gpu.func @nsa_window_bwd_dq
// SM80-NOT: wgmma
// SM80: nvvm.mma.sync
func.func @nsa_window_bwd_dq(%q: tensor<?x?x16x128xbf16>, %k: tensor<?x?x1x128xbf16>, %v: tensor<?x?x1x128xbf16>)
    -> (tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 512>, nsa.kernel = "bwd_dq"}
      : (tensor<?x?x16x128xbf16>, tensor<?x?x1x128xbf16>, tensor<?x?x1x128xbf16>)
      -> (tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>
}

// -----

// The compressed bwd_dq for Dk = 192 on sm_90a: two warpgroups (8 warps) take
// turns issuing their wgmma batches (FA3's ping-pong): warpgroup 1 hands the
// first turn to warpgroup 0 at barrier 3, each waits for its turn at 3 + g and
// passes it after commit_group. Its bwd_dkdv issues in lockstep (no turns).
// CHECK-LABEL: gpu.func @nsa_compressed_bwd_dq_wide
// CHECK-SAME: known_block_size = array<i32: 256, 1, 1>
// CHECK: "barrier.arrive 3, 256;"
// CHECK: "barrier.sync 3, 256;"
// CHECK: "barrier.sync 4, 256;"
// CHECK: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16
// CHECK: wgmma.commit_group.sync.aligned
// CHECK: "barrier.arrive 4, 256;"
// CHECK: "barrier.arrive 3, 256;"
// CHECK: wgmma.wait_group.sync.aligned 0
// CHECK-LABEL: gpu.func @nsa_compressed_bwd_dkdv_wide
// CHECK-NOT: barrier.arrive
// CHECK: gpu.return
// SM80-LABEL: gpu.func @nsa_compressed_bwd_dq_wide
// SM80-NOT: barrier.arrive
// SM80: gpu.return
func.func @nsa_compressed_bwd_dq_wide(%q: tensor<?x?x16x192xbf16>, %k: tensor<?x?x1x192xbf16>, %v: tensor<?x?x1x128xbf16>)
    -> (tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, nsa.kernel = "bwd_dq"}
      : (tensor<?x?x16x192xbf16>, tensor<?x?x1x192xbf16>, tensor<?x?x1x128xbf16>)
      -> (tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>
}
func.func @nsa_compressed_bwd_dkdv_wide(%q: tensor<?x?x16x192xbf16>, %k: tensor<?x?x1x192xbf16>, %v: tensor<?x?x1x128xbf16>)
    -> (tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>, nsa.kernel = "bwd_dkdv"}
      : (tensor<?x?x16x192xbf16>, tensor<?x?x1x192xbf16>, tensor<?x?x1x128xbf16>)
      -> (tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>
}

// -----

// The fused scoring + top-n kernel of the compressed branch: mma for the
// scores of 8 tokens x 16 heads (8 warps; sm_90a: S^T = K Q^T, two warpgroups'
// wgmma on a 64-key chunk while the next one is copied), the group sum in the
// thread and its quad (shuffles), eq. 9 weights, then per warp the merge into
// each token's list by ballots (survivors, then ranks by shuffles or the n-th key
// bit by bit; no CTA barrier).
// CHECK-LABEL: gpu.func @nsa_compressed_topn
// SM80-LABEL: gpu.func @nsa_compressed_topn
// SM80-NOT: wgmma
// SM80: nvvm.mma.sync
// SM80: nvvm.bar.warp.sync
// CHECK-SAME: known_block_size = array<i32: 256, 1, 1>
// CHECK: nvvm.cp.async.wait.group 0
// CHECK: fence.proxy.async.shared::cta
// CHECK: nvvm.barrier0
// CHECK: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK: nvvm.shfl.sync bfly
// CHECK: nvvm.vote.sync ballot
// CHECK: nvvm.bar.warp.sync
// CHECK: llvm.intr.ctpop
// CHECK: nvvm.shfl.sync idx
// CHECK: nvvm.vote.sync ballot
// CHECK: llvm.intr.cttz
// CHECK: nvvm.bar.warp.sync
func.func @nsa_compressed_topn(%q: tensor<?x?x16x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>)
    -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.compressed_attention %q, %k, %v
      {gather = #nsa.compressed<block = 32, stride = 16>, nsa.kernel = "topn",
       nsa.select = #nsa.selected<block = 64, count = 16>, nsa.forced = array<i64: 1, 2>}
      : (tensor<?x?x16x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>
}

// -----

// One token per CTA stays possible: G = 4 rows in one warp.
// CHECK-LABEL: gpu.func @topn_one_token
// CHECK-SAME: known_block_size = array<i32: 32, 1, 1>
// CHECK: nvvm.mma.sync
// CHECK: nvvm.bar.warp.sync
func.func @topn_one_token(%q: tensor<?x?x4x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>)
    -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>) {
  %o, %lse = nsa.compressed_attention %q, %k, %v
      {gather = #nsa.compressed<block = 32, stride = 16>, nsa.kernel = "topn",
       nsa.select = #nsa.selected<block = 64, count = 16>, nsa.forced = array<i64: 1, 2>,
       tile = #nsa.tile<warps = 1, tokens = 1, kv_chunk = 32>}
      : (tensor<?x?x4x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>)
  return %o, %lse : tensor<?x?x4x64xbf16>, tensor<?x?x4xf32>
}

// -----

// Weighted pooling's weight gradient: a fixed-order CTA reduction.
// CHECK-LABEL: gpu.func @nsa_compressed_pool_dw
// CHECK-SAME: known_block_size = array<i32: 256, 1, 1>
// CHECK: nvvm.shfl.sync bfly
// CHECK: nvvm.barrier0
func.func @nsa_compressed_pool_dw(%q: tensor<?x?x1x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>)
    -> (tensor<?x?x1x64xbf16>, tensor<?x?x1xf32>) {
  %o, %lse = nsa.compressed_attention %q, %k, %v
      {gather = #nsa.compressed<block = 32, stride = 16>, nsa.kernel = "pool_dw", nsa.weighted}
      : (tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>)
      -> (tensor<?x?x1x64xbf16>, tensor<?x?x1xf32>)
  return %o, %lse : tensor<?x?x1x64xbf16>, tensor<?x?x1xf32>
}
