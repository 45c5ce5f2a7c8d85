// Warpgroup-scope tensor-core primitives of sm_90a: wgmma.mma_async with fp32
// accumulation, the A operand in registers or shared memory and the B operand
// in shared memory.
//
// A warpgroup is 4 consecutive warps (128 threads, the first warp a multiple of
// 4) computing a 64-row tile together. Warp i of the group owns rows 16i..16i+15
// and holds them in the mma.sync layouts of WarpMma.h (PTX ISA, "Register
// fragments and shared memory matrix layouts" of wgmma):
//   A (64x16, per warp 16x16): the m16n8k16 A fragment (Frag4 of packed pairs);
//   D (64xN fp32): N/2 values, d[4j + e] is element e of the m16n8 C fragment
//                  of columns 8j..8j+7, i.e. a vector<Frag4> of N/8 tiles.
// Shared operands use the 128-byte swizzle (stageSwizzledPanels, KernelCommon.h):
// rows of 64 elements in panels, 8-row atoms of 1024 bytes. Without a swizzle
// the tensor cores' shared reads conflict: H100, window forward 9.0 ms against
// 4.9 with mma.sync (bench/results/2026-11-25-h100-session4/run14).
// The issue is asynchronous: fence() before the first mma of a batch (after the
// registers it reads were written), commitAndWait() before the results are read.
// Every accumulator passes through these as operands, so no instruction that
// reads or writes them can be moved across by the compiler.
#pragma once

#include "WarpMma.h"

#include <vector>

namespace nsajit::tpl {

// A tile staged in 128-byte-swizzled panels (stageSwizzledPanels): its byte
// offset in shared memory (1024-byte aligned) and its row count, the length of
// each 64-column panel.
struct SwizzledTile {
  mlir::Value byteOffset;
  int rows;
};

class WarpgroupMma {
public:
  WarpgroupMma(IRBuilderHelpers &h, DType dtype) : h(h), dtype(dtype) {}

  // Shared memory matrix descriptor (128-byte swizzle) of the operand starting
  // at byte `byteOffset` of `smem`. K-major operands: `strideBytes` = 1024 (the
  // 8-row atoms), `leadingBytes` unused (16); N-major (transposed B): the
  // 64-column panels are `leadingBytes` apart and the 8-row atoms along K
  // `strideBytes` = 1024. Multiples of 16, below 256 KiB.
  mlir::Value descriptor(mlir::Value smem, mlir::Value byteOffset, int leadingBytes, int strideBytes);
  // The descriptor `bytes` further on (the 14-bit address field cannot carry
  // into the others: shared memory is below 256 KiB).
  mlir::Value advance(mlir::Value desc, int bytes);

  // wgmma.fence: orders the register writes before it against the next mma.
  // Returns `regs` (f32 or i32 values) passed through.
  std::vector<mlir::Value> fence(llvm::ArrayRef<mlir::Value> regs);
  // acc (64 x N, N = 4 * tiles) += A (64 x 16, registers) * B (16 x N, shared).
  // `transposeB`: B is stored N-major (its rows are K; e.g. V as [key][dim]),
  // else K-major (its rows are N; e.g. K as [key][dim] for Q K^T).
  std::vector<mlir::Value> mma(llvm::ArrayRef<mlir::Value> acc, const Frag4 &a, mlir::Value descB, bool transposeB);
  // acc += A (64 x 16) * B (16 x N), both from shared memory, both K-major
  // (A's rows are the 64 M rows of this warpgroup; e.g. Q in swizzled panels).
  std::vector<mlir::Value> mmaShared(llvm::ArrayRef<mlir::Value> acc, mlir::Value descA, mlir::Value descB);
  // The two products the attention kernels are made of, issued only (the
  // caller fences before and waits after a batch of them):
  // acc (64 x N) += A B^T over `depth` columns, A = rows aRow..aRow+63 of `a`
  // and B = the N = 2 acc.size() rows of `b` (both K-major; e.g. S = Q K^T).
  std::vector<mlir::Value> issueProductABt(llvm::ArrayRef<mlir::Value> acc, mlir::Value smem, const SwizzledTile &a,
                                           mlir::Value aRow, const SwizzledTile &b, int depth);
  // acc (64 x N) += A B^T, A = a.size() register fragments (64 x 16 each, the
  // depth 16 a.size()) and B = the N = 2 acc.size() rows of `b` (K-major; e.g.
  // S = Q K^T with Q held in registers: only K is read from shared memory).
  std::vector<mlir::Value> issueProductARegsBt(llvm::ArrayRef<mlir::Value> acc, llvm::ArrayRef<Frag4> a,
                                               mlir::Value smem, const SwizzledTile &b);
  // acc (64 x N) += A B, A = a.size() register fragments (64 x 16 each) and B
  // = the 16 a.size() rows of `b`, N of its columns (N-major; e.g. O += P V).
  std::vector<mlir::Value> issueProductAB(llvm::ArrayRef<mlir::Value> acc, llvm::ArrayRef<Frag4> a, mlir::Value smem,
                                          const SwizzledTile &b);

  // wgmma.commit_group then wait_group 0: every mma issued so far is complete.
  std::vector<mlir::Value> commitAndWait(llvm::ArrayRef<mlir::Value> acc);
  // wgmma.commit_group: the mmas issued since the last commit form a group.
  std::vector<mlir::Value> commit(llvm::ArrayRef<mlir::Value> acc);
  // wgmma.wait_group `pending`: all but the `pending` most recent groups are
  // complete; `acc` (the accumulators of the completed ones) passes through.
  std::vector<mlir::Value> wait(llvm::ArrayRef<mlir::Value> acc, int pending);

  // Flattening between the m16n8 tiles of the templates and wgmma operands.
  static std::vector<mlir::Value> flatten(const std::vector<Frag4> &tiles);
  static std::vector<Frag4> tiles(llvm::ArrayRef<mlir::Value> flat);

private:
  // One wgmma.mma_async on `acc` with `sources` (4 A registers and the B
  // descriptor, or the A and B descriptors); `tail` ends its immediates.
  std::vector<mlir::Value> issue(llvm::ArrayRef<mlir::Value> acc, llvm::ArrayRef<mlir::Value> sources,
                                 llvm::ArrayRef<std::string> sourceConstraints, llvm::StringRef tail);
  // One inline-asm statement whose outputs are `regs` (tied to them as inputs)
  // followed by `extra` inputs with their constraints.
  std::vector<mlir::Value> passThrough(llvm::StringRef asmText, llvm::ArrayRef<mlir::Value> regs,
                                       llvm::ArrayRef<mlir::Value> extra, llvm::ArrayRef<std::string> extraConstraints);

  IRBuilderHelpers &h;
  DType dtype;
};

// Shared-memory operations around the async proxy that wgmma reads through.
// fence.proxy.async.shared::cta: this thread's generic-proxy writes (cp.async,
// st.shared) become visible to later async-proxy reads (after a barrier).
void fenceAsyncProxy(IRBuilderHelpers &h);

} // namespace nsajit::tpl
