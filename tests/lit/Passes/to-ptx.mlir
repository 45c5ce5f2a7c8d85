// RUN: nsa-opt %s --nsa-to-ptx="chip=sm_90a" | FileCheck %s --check-prefix=SM90
// RUN: nsa-opt %s --nsa-to-ptx="chip=sm_80" | FileCheck %s --check-prefix=SM80
// RUN: nsa-opt %s --nsa-to-ptx="chip=sm_80" | FileCheck %s --check-prefix=SM80Q
// RUN: nsa-opt %s --nsa-to-ptx="chip=sm_90a" | FileCheck %s --check-prefix=WGS
// RUN: nsa-opt %s --nsa-to-ptx="chip=sm_90a" | FileCheck %s --check-prefix=WGO

// The whole pipeline: nsa op -> tiles -> gpu.module -> NVVM/LLVM -> PTX text
// in a gpu.binary, with no CUDA toolkit and no libdevice.
// SM90: gpu.binary @nsa_kernels
// SM90-SAME: chip = "sm_90a"
// SM90-SAME: .target sm_90a
// SM90-SAME: .extern .shared .align 1024 .b8 nsa_smem[];
// SM90-SAME: .visible .entry nsa_compressed_fwd(
// SM90-SAME: .maxntid 384, 1, 1
// Warp-specialised: the producer warpgroup stages asynchronously (global ->
// shared without registers, zero-filling missing rows), its copies arriving on
// an mbarrier as they land:
// SM90-SAME: setmaxnreg.dec.sync.aligned.u32 40
// SM90-SAME: cp.async.cg.shared.global [{{[^]]+}}], [{{[^]]+}}], 16, {{%r[0-9]+}};
// SM90-SAME: cp.async.commit_group;
// SM90-SAME: cp.async.mbarrier.arrive.noinc.shared::cta.b64
// The consumers: Q and K read by wgmma from shared memory (descriptors), then
// V (transposed by the instruction) with P from registers; in the chunk loop
// the next S and the last P V are in flight together (block order varies, so
// one prefix per fact):
// SM90-SAME: setmaxnreg.inc.sync.aligned.u32 232
// SM90-SAME: fence.proxy.async.shared::cta;
// SM90-SAME: wgmma.fence.sync.aligned;
// WGS: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {{[^;]*}}, p, 1, 1, 0, 0;
// WGS-SAME: wgmma.commit_group.sync.aligned;
// WGS-SAME: wgmma.wait_group.sync.aligned 0;
// WGS-SAME: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {{[^;]*}}, p, 1, 1, 0, 0;
// WGS-SAME: wgmma.commit_group.sync.aligned;
// WGS-SAME: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{[^;]*}}, p, 1, 1, 1;
// WGS-SAME: wgmma.commit_group.sync.aligned;
// WGS-SAME: wgmma.wait_group.sync.aligned 1;
// WGS-SAME: wgmma.wait_group.sync.aligned 0;
// WGO: cvt.rn.bf16x2.f32
// WGO-SAME: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{[^;]*}}, p, 1, 1, 1;
// WGO-SAME: wgmma.wait_group.sync.aligned 0;
// SM90-NOT: __nv_
// sm_80: every fragment by ldmatrix (V transposed on the fly), mma.sync.
// SM80: gpu.binary @nsa_kernels
// SM80-SAME: .target sm_80
// SM80-SAME: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
// SM80-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// SM80-NOT: wgmma
// SM80Q: ldmatrix.sync.aligned.m8n8.x4.shared.b16
func.func @nsa_compressed_fwd(%q: tensor<?x?x64x128xbf16>, %k: tensor<?x?x4x128xbf16>, %v: tensor<?x?x4x128xbf16>)
    -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>) {
  %o, %lse = nsa.compressed_attention %q, %k, %v {gather = #nsa.compressed<block = 32, stride = 16>}
      : (tensor<?x?x64x128xbf16>, tensor<?x?x4x128xbf16>, tensor<?x?x4x128xbf16>)
      -> (tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>)
  return %o, %lse : tensor<?x?x64x128xbf16>, tensor<?x?x64xf32>
}
