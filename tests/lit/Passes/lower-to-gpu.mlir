// RUN: nsa-opt %s --split-input-file --nsa-configure-tiles --nsa-lower-to-gpu --verify-diagnostics | FileCheck %s
// RUN: nsa-opt %s --split-input-file --nsa-configure-tiles="chip=sm_80" --nsa-lower-to-gpu="chip=sm_80" --verify-diagnostics | FileCheck %s --check-prefix=SM80
// RUN: not nsa-opt %s --split-input-file --nsa-lower-to-gpu="chip=sm_70" 2>&1 | FileCheck %s --check-prefix=BADCHIP
// BADCHIP: chip = 'sm_70' is unknown; allowed: sm_80, sm_90a

// The func becomes a kernel of the same name in one gpu.module, with the
// pointer + element-stride ABI (7 pointers, 18 strides, T and Tkv), launch
// bounds from the tile, dynamic shared memory and tensor-core mma.
// CHECK: module attributes {gpu.container_module}
// CHECK-NOT: func.func
// CHECK: gpu.module @nsa_kernels
// CHECK: llvm.mlir.global external @nsa_smem() {addr_space = 3 : i32, alignment = 1024 : i64} : !llvm.array<0 x i8>
// CHECK: gpu.func @nsa_selected_fwd(%{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: i64
// CHECK-SAME: %{{.*}}: i32, %{{.*}}: i32) kernel attributes {known_block_size = array<i32: 64, 1, 1>}
// (Eight CTAs of 64 threads would fill the register file at 128 registers a
// thread, but the shared memory holds four: no register bound. The sm_80 window
// kernel below gets one: four CTAs of 128 threads fit.)
// The union schedule: the tokens' index lists are read once into shared memory,
// the chunk loop is software-pipelined (the next chunk's cp.async group in
// flight while the iteration waits for its own) and a warp none of whose rows
// selected a block skips it (mma.sync on every target: a warpgroup would compute
// the blocks of 4 tokens).
// CHECK: scf.for
// CHECK: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> i32
// CHECK: nvvm.barrier0
// K/V chunks go to 128-byte-swizzled panels (chunk ^ row % 8), which ldmatrix
// reads back with the same xor.
// CHECK: scf.for
// CHECK: arith.xori
// CHECK: nvvm.cp.async.shared.global {{.*}} cache =  cg
// CHECK: nvvm.cp.async.commit.group
// CHECK: nvvm.cp.async.commit.group
// CHECK: nvvm.cp.async.wait.group 1
// CHECK: nvvm.barrier0
// CHECK: nvvm.vote.sync any
// CHECK: scf.if
// CHECK: nvvm.mma.sync {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>{{.*}}shape = #nvvm.shape<m = 16, n = 8, k = 16>
// Chunks every token sees skip the per-key mask (two versions of the scaling).
// CHECK: scf.if
// CHECK: } else {
// CHECK: arith.cmpi sle
// CHECK: nvvm.shfl.sync bfly
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK-NOT: wgmma
// CHECK: gpu.return
// SM80: gpu.func @nsa_selected_fwd
// SM80: nvvm.mma.sync
// SM80: gpu.return
func.func @nsa_selected_fwd(%q: tensor<?x?x16x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>,
                            %i: tensor<?x?x1x16xi32>) -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %i {gather = #nsa.selected<block = 64, count = 16>}
      : (tensor<?x?x16x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x16xi32>)
      -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>
}

// -----

// fp16 inputs use the f16 mma. sm_90a: the window kernel is warp-specialised:
// 8 consumer warps (two warpgroups, wgmma) and a producer warpgroup (384
// threads, one CTA an SM, so no nvvm.minctasm); sm_80: 4 warps and mma.sync.
// CHECK: gpu.func @win({{.*}}) kernel attributes {known_block_size = array<i32: 384, 1, 1>}
// Thread 0 sets up the mbarriers (a full and an empty one for each of the 3
// ring buffers and the 2 Q tiles); the one CTA barrier follows.
// CHECK-COUNT-10: mbarrier.init.shared::cta.b64
// CHECK: nvvm.barrier0
// CHECK-NOT: nvvm.barrier0
// The producer gives registers away, then walks the CTA's tiles: a tile's Q
// once its buffer is free, then the chunks, each into a ring buffer the
// consumers released; the copies arrive on the buffer's barrier as they land
// (the swizzled staging: chunk ^ row % 8, a thread walking rows).
// CHECK: setmaxnreg.dec.sync.aligned.u32 40;
// CHECK: scf.for
// CHECK: mbarrier.try_wait.parity.shared::cta.b64
// CHECK: arith.xori
// CHECK: nvvm.cp.async.shared.global
// CHECK: cp.async.mbarrier.arrive.noinc.shared::cta.b64
// A chunk's copies are unrolled, 4 rows of K then of V a thread, with no loop
// between them and its arrival (a loop's next pass rewrote the address
// registers a copy still held).
// CHECK: scf.for
// CHECK: mbarrier.try_wait.parity.shared::cta.b64
// CHECK: nvvm.cp.async.shared.global
// CHECK-NOT: {{scf.for|cp.async.mbarrier.arrive}}
// CHECK: nvvm.cp.async.shared.global
// CHECK-NOT: {{scf.for|cp.async.mbarrier.arrive}}
// CHECK: nvvm.cp.async.shared.global
// CHECK-NOT: {{scf.for|cp.async.mbarrier.arrive}}
// CHECK: nvvm.cp.async.shared.global
// CHECK-NOT: {{scf.for|cp.async.mbarrier.arrive}}
// CHECK: nvvm.cp.async.shared.global
// CHECK-NOT: {{scf.for|cp.async.mbarrier.arrive}}
// CHECK: nvvm.cp.async.shared.global
// CHECK-NOT: {{scf.for|cp.async.mbarrier.arrive}}
// CHECK: nvvm.cp.async.shared.global
// CHECK-NOT: {{scf.for|cp.async.mbarrier.arrive}}
// CHECK: nvvm.cp.async.shared.global
// CHECK-NOT: scf.for
// CHECK: cp.async.mbarrier.arrive.noinc.shared::cta.b64
// CHECK: nvvm.cp.async.wait.group 0
// The consumers take the registers, wait for a tile's Q and fence the async
// proxy (the copies landed in the generic one).
// CHECK: setmaxnreg.inc.sync.aligned.u32 232;
// CHECK: mbarrier.try_wait.parity.shared::cta.b64
// CHECK: "fence.proxy.async.shared::cta;"
// The first chunk: S = Q K^T (64 keys, from shared memory) and its softmax.
// CHECK: mbarrier.try_wait.parity.shared::cta.b64
// CHECK: "fence.proxy.async.shared::cta;"
// CHECK: wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {{.*}}, p, 1, 1, 0, 0;
// CHECK: wgmma.wait_group.sync.aligned 0;
// CHECK: cvt.rn.f16x2.f32
// Then each chunk's S and the previous chunk's P V (P from registers, V
// transposed) in flight together: the softmax runs once S is complete (wait 1),
// the buffer is released after P V (wait 0), and P is packed only then.
// CHECK: scf.for
// CHECK: mbarrier.try_wait.parity.shared::cta.b64
// CHECK: "wgmma.fence.sync.aligned;"
// CHECK: wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {{.*}}, p, 1, 1, 0, 0;
// CHECK: wgmma.commit_group.sync.aligned;
// CHECK: wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {{.*}}, p, 1, 1, 1;
// CHECK: wgmma.commit_group.sync.aligned;
// CHECK: wgmma.wait_group.sync.aligned 1;
// CHECK: llvm.intr.maxnum
// CHECK: wgmma.wait_group.sync.aligned 0;
// CHECK: mbarrier.arrive.shared::cta.b64 _,
// CHECK: cvt.rn.f16x2.f32
// The last chunk's P V, the buffer and the Q tile released, the outputs stored.
// CHECK: wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {{.*}}, p, 1, 1, 1;
// CHECK: wgmma.wait_group.sync.aligned 0;
// CHECK: mbarrier.arrive.shared::cta.b64 _,
// CHECK: mbarrier.arrive.shared::cta.b64 _,
// CHECK: llvm.store
// SM80: gpu.func @win({{.*}}) kernel attributes {known_block_size = array<i32: 128, 1, 1>, nvvm.minctasm = 4 : i32}
// SM80: nvvm.mma.sync {{.*}}shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (vector<2xf16>, vector<2xf16>, f32)
// SM80-NOT: wgmma
func.func @win(%q: tensor<?x?x4x64xf16>, %k: tensor<?x?x1x64xf16>, %v: tensor<?x?x1x64xf16>)
    -> (tensor<?x?x4x64xf16>, tensor<?x?x4xf32>) {
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 64>}
      : (tensor<?x?x4x64xf16>, tensor<?x?x1x64xf16>, tensor<?x?x1x64xf16>)
      -> (tensor<?x?x4x64xf16>, tensor<?x?x4xf32>)
  return %o, %lse : tensor<?x?x4x64xf16>, tensor<?x?x4xf32>
}

// -----

// A tile of one warpgroup is not warp-specialised: its warps copy and compute,
// 4 CTAs an SM (ptxas keeps to 128 registers). The staging swizzles each row's
// 16-byte chunks by the row (chunk ^ row % 8), fenced for the async proxy.
// CHECK: gpu.func @win_one_warpgroup({{.*}}) kernel attributes {known_block_size = array<i32: 128, 1, 1>, nvvm.minctasm = 4 : i32}
// CHECK-NOT: mbarrier
// CHECK: scf.for
// CHECK: arith.xori
// CHECK: nvvm.cp.async.shared.global
// CHECK: nvvm.cp.async.wait.group 0
// CHECK: llvm.inline_asm has_side_effects "fence.proxy.async.shared::cta;"
// The chunk loop over a ring of three buffers: its own chunk complete (the next
// one's copies may still fly), fenced, one barrier, then the copies two chunks ahead:
// CHECK: nvvm.cp.async.wait.group 1
// CHECK: llvm.inline_asm has_side_effects "fence.proxy.async.shared::cta;"
// CHECK: nvvm.barrier0
// CHECK: nvvm.cp.async.commit.group
// CHECK: "wgmma.fence.sync.aligned;"
// CHECK: wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {{.*}}, p, 1, 1, 0, 0;
// CHECK: wgmma.wait_group.sync.aligned 0;
// CHECK: cvt.rn.f16x2.f32
// CHECK: wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {{.*}}, p, 1, 1, 1;
// SM80: gpu.func @win_one_warpgroup({{.*}}) kernel attributes {known_block_size = array<i32: 128, 1, 1>, nvvm.minctasm = 4 : i32}
func.func @win_one_warpgroup(%q: tensor<?x?x4x64xf16>, %k: tensor<?x?x1x64xf16>, %v: tensor<?x?x1x64xf16>)
    -> (tensor<?x?x4x64xf16>, tensor<?x?x4xf32>) {
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 64>,
                                              tile = #nsa.tile<warps = 4, tokens = 16, kv_chunk = 32>}
      : (tensor<?x?x4x64xf16>, tensor<?x?x1x64xf16>, tensor<?x?x1x64xf16>)
      -> (tensor<?x?x4x64xf16>, tensor<?x?x4xf32>)
  return %o, %lse : tensor<?x?x4x64xf16>, tensor<?x?x4xf32>
}

// -----

// The selected branch's warp-specialised union tile (8 warps, 8 tokens of G =
// 16, 64-key chunks; sm_90a): the producer warpgroup builds a tile's union at
// its own named barrier (a bitmap of blocks set by shared atomics; a union
// past the limit is only counted when tokenDone is given), stages the tile's Q
// once it knows the tile is computed here, and hands both over (a plain
// arrival besides the copies'), then the union's chunks. The consumers compute
// only the tiles they were not told to leave, and mark the tokens of each tile
// in tokenDone.
// CHECK: gpu.func @slc_ws({{.*}}) kernel attributes {known_block_size = array<i32: 384, 1, 1>}
// CHECK-COUNT-10: mbarrier.init.shared::cta.b64
// CHECK: setmaxnreg.dec.sync.aligned.u32 40;
// CHECK: llvm.atomicrmw _or
// CHECK: "barrier.sync 1, 128;"
// CHECK: nvvm.cp.async.shared.global
// CHECK: "mbarrier.arrive.shared::cta.b64 _, [$0];"
// CHECK: cp.async.mbarrier.arrive.noinc.shared::cta.b64
// CHECK: setmaxnreg.inc.sync.aligned.u32 232;
// CHECK: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16
// CHECK: wgmma.wait_group.sync.aligned 1;
// CHECK: llvm.store {{.*}} : i8, !llvm.ptr<1>
// SM80: gpu.func @slc_ws({{.*}}) kernel attributes {known_block_size = array<i32: 256, 1, 1>
// SM80-NOT: mbarrier
// SM80: nvvm.mma.sync
func.func @slc_ws(%q: tensor<?x?x16x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>,
                  %i: tensor<?x?x1x16xi32>) -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %i {gather = #nsa.selected<block = 64, count = 16>,
                                                    tile = #nsa.tile<warps = 8, tokens = 8, kv_chunk = 64>}
      : (tensor<?x?x16x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x16xi32>)
      -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>
}

// -----

// One kernel per func: two ops in one func are refused.
// expected-error @+1 {{nsa-lower-to-gpu expects one nsa attention op per func (one kernel each), found 2}}
func.func @two(%q: tensor<?x?x4x64xf16>, %k: tensor<?x?x1x64xf16>, %v: tensor<?x?x1x64xf16>)
    -> (tensor<?x?x4x64xf16>, tensor<?x?x4xf32>) {
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 64>}
      : (tensor<?x?x4x64xf16>, tensor<?x?x1x64xf16>, tensor<?x?x1x64xf16>)
      -> (tensor<?x?x4x64xf16>, tensor<?x?x4xf32>)
  %o2, %lse2 = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 32>}
      : (tensor<?x?x4x64xf16>, tensor<?x?x1x64xf16>, tensor<?x?x1x64xf16>)
      -> (tensor<?x?x4x64xf16>, tensor<?x?x4xf32>)
  return %o2, %lse2 : tensor<?x?x4x64xf16>, tensor<?x?x4xf32>
}
