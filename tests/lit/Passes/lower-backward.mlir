// RUN: nsa-opt %s --split-input-file --nsa-configure-tiles --nsa-lower-to-gpu | FileCheck %s

// "nsa.kernel" picks the branch's backward kernels. bwd_pre: one thread per
// query row, reading the optional gate (null pointer = gates of 1).
// CHECK-LABEL: gpu.func @nsa_window_bwd_pre
// CHECK-SAME: kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// CHECK: llvm.ptrtoint
// CHECK: scf.for
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

// bwd_dq: 13 pointers, 39 strides, T and Tkv; mma for S, dP and dS K.
// CHECK-LABEL: gpu.func @nsa_selected_bwd_dq
// CHECK-SAME: %{{.*}}: i32, %{{.*}}: i32) kernel
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
// rows a step) and a warp ballot that compacts the tokens selecting the block.
// CHECK-LABEL: gpu.func @nsa_selected_bwd_dkdv
// CHECK-SAME: known_block_size = array<i32: 128, 1, 1>
// CHECK: nvvm.read.ptx.sreg.lanemask.lt
// CHECK: nvvm.vote.sync ballot
// CHECK: llvm.intr.ctpop
// CHECK: nvvm.mma.sync
func.func @nsa_selected_bwd_dkdv(%q: tensor<?x?x16x64xbf16>, %k: tensor<?x?x1x64xbf16>, %v: tensor<?x?x1x64xbf16>,
                                 %i: tensor<?x?x1x4xi32>) -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.selected_attention %q, %k, %v, %i {gather = #nsa.selected<block = 64, count = 4>, nsa.kernel = "bwd_dkdv"}
      : (tensor<?x?x16x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x64xbf16>, tensor<?x?x1x4xi32>)
      -> (tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x64xbf16>, tensor<?x?x16xf32>
}
