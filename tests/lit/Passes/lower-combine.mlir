// RUN: nsa-opt %s --nsa-configure-tiles --nsa-lower-to-gpu | FileCheck %s

// The gated combination of the branch outputs (nsa.kernel = "combine" on any
// branch op): 7 pointers (the three outputs, their gates, the result), 21
// strides, T, HQ and B; a 16-byte vector a thread: each gated term rounded to
// bf16 (an absent gate, a null pointer, keeps o), the float32 sum rounded once.
// CHECK-LABEL: gpu.func @nsa_window_combine
// CHECK-SAME: %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: i64
// CHECK-SAME: %{{.*}}: i32, %{{.*}}: i32, %{{.*}}: i32) kernel attributes {known_block_size = array<i32: 256, 1, 1>}
// CHECK: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xbf16>
// CHECK: arith.extf %{{.*}} : vector<8xbf16> to vector<8xf32>
// CHECK: llvm.ptrtoint
// CHECK: arith.mulf %{{.*}} : vector<8xf32>
// CHECK: arith.truncf %{{.*}} : vector<8xf32> to vector<8xbf16>
// CHECK: arith.addf %{{.*}} : vector<8xf32>
// CHECK: arith.addf %{{.*}} : vector<8xf32>
// CHECK: arith.truncf %{{.*}} : vector<8xf32> to vector<8xbf16>
// CHECK: llvm.store %{{.*}} {alignment = 16 : i64} : vector<8xbf16>, !llvm.ptr<1>
// CHECK-NOT: nvvm.barrier0
// CHECK: gpu.return
func.func @nsa_window_combine(%q: tensor<?x?x16x128xbf16>, %k: tensor<?x?x1x128xbf16>, %v: tensor<?x?x1x128xbf16>)
    -> (tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>) {
  %o, %lse = nsa.window_attention %q, %k, %v {gather = #nsa.window<size = 1>, nsa.kernel = "combine"}
      : (tensor<?x?x16x128xbf16>, tensor<?x?x1x128xbf16>, tensor<?x?x1x128xbf16>)
      -> (tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>)
  return %o, %lse : tensor<?x?x16x128xbf16>, tensor<?x?x16xf32>
}
