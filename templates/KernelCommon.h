// Pieces every attention kernel template shares: the thread's position in the
// CTA, the dynamic shared memory symbol, cooperative global -> shared staging
// and the branch's key sets (BranchKeys).
#pragma once

#include "IRBuilderHelpers.h"

#include "nsajit/compiler/KernelSpec.h"

#include <functional>
#include <utility>

namespace nsajit::tpl {

// Name of the dynamic shared memory symbol the kernels use.
inline constexpr const char *kSharedMemorySymbol = "nsa_smem";

// lane = 4 * group + tig inside a warp (the mma fragment coordinates).
struct ThreadIds {
  mlir::Value tid, warp, lane, group, tig;
  static ThreadIds read(IRBuilderHelpers &h);
};

// Declares `nsa_smem` (external, addrspace 3, 16-byte aligned) once per module
// and returns its address in the current function.
mlir::Value sharedMemoryBase(IRBuilderHelpers &h, mlir::Operation *gpuModule);
void declareSharedMemory(IRBuilderHelpers &h, mlir::Operation *gpuModule);

// Creates `gpu.func @name(pointers x !llvm.ptr<1>, strides x i64, ints x i32)
// kernel` with launch bounds of `threads` at the builder's insertion point and
// returns its entry block (the caller sets the insertion point into it).
mlir::Block *createKernelFunction(IRBuilderHelpers &h, llvm::StringRef name, int pointers, int strides, int ints,
                                  int threads);

// Returns the global element offset (i64) of a row and whether it exists.
using RowOffsetFn = std::function<std::pair<mlir::Value, mlir::Value>(mlir::Value row)>;

// Copies `rows` rows of `dim` 16-bit elements (a multiple of 64) from global to
// shared memory in 16-byte cp.async copies (L2 only: the K/V rows are streamed),
// all `threads` threads cooperating, 8 on a row; missing rows become zeros (a
// zero-byte source fills).
// Every copy of a thread is in flight at once, so a single warp keeps tens of
// kilobytes of loads outstanding. `smemElemBase` and `pitch` are in 16-bit
// elements. `wait`: the thread waits for all its copies before returning (the
// caller's barrier then makes the whole tile visible); pass false to overlap
// this staging with the next one and call waitStaged() before the barrier.
// `commit`: close the thread's cp.async group (false: the caller commits, to
// put several stagings, or none, into one group of a pipeline).
void stageRows(IRBuilderHelpers &h, const ThreadIds &ids, int threads, mlir::Value smem, mlir::Value smemElemBase,
               int pitch, int rows, int dim, mlir::Value src, const RowOffsetFn &rowOffset, bool wait = true,
               bool commit = true);
// The same copies into the 128-byte-swizzled layout the wgmma operands read
// without bank conflicts: the columns are cut into panels of 64 (128 bytes a
// row); panel p holds all `rows` rows, 128 bytes each, from element
// p * rows * 64; the 16-byte chunk c of row r sits at chunk c ^ (r % 8). The
// tile must start 1024-byte aligned; `rows` is a multiple of 8 and `dim` of 64.
// Each thread copies one 16-byte chunk of whole rows, so one row offset serves
// the row's dim / 64 copies: the kernels that stage a chunk every step issue
// few instructions for it (H100, T = 64k, Dk = 192, against an offset a copy:
// window forward + backward 22.0 -> 20.8 ms, compressed l = 32, d = 16 66.7 ->
// 63.1; bench/results/2026-11-26-h100-session9/s9run3). `unrolled`: the passes
// as straight-line code (where `rows` is a multiple of threads / 8), so no pass
// rewrites the address registers of a copy still in flight (the forward's
// producer warpgroup).
void stageSwizzledPanels(IRBuilderHelpers &h, const ThreadIds &ids, int threads, mlir::Value smem,
                         mlir::Value smemElemBase, int rows, int dim, mlir::Value src, const RowOffsetFn &rowOffset,
                         bool wait = true, bool commit = true, bool unrolled = false);
// Closes the thread's current cp.async group (possibly empty).
void commitStaged(IRBuilderHelpers &h);
// Waits until at most `pending` of this thread's most recent staging groups are
// still in flight (cp.async.wait_group).
void waitStaged(IRBuilderHelpers &h, int pending = 0);

// Which keys chunk c of a query-centric kernel covers and which keys a query
// token may see: the only thing that differs between the branches.
class BranchKeys {
public:
  struct IndexInput {
    mlir::Value ptr;          // int32 [B, T, H, n]
    mlir::Value strides[3];   // i64 element strides (batch, token, head)
  };
  BranchKeys(IRBuilderHelpers &h, const KernelSpec &spec, IndexInput idx, mlir::Value kvLen, mlir::Value batch,
             mlir::Value kvHead, mlir::Value t0, mlir::Value tMax)
      : h(h), spec(spec), idx(idx), kvLen(kvLen), batch(batch), kvHead(kvHead), t0(t0), tMax(tMax) {}

  // Number of key chunks the CTA walks (uniform across the CTA).
  mlir::Value numChunks();
  // First key of chunk c, and whether the chunk holds any key at all
  // (selected branch: the index is -1, negative or names a future block).
  std::pair<mlir::Value, mlir::Value> chunkStart(mlir::Value c);
  // Whether query token `tok` may attend key `key` (key is inside [0, kvLen)).
  mlir::Value visible(mlir::Value tok, mlir::Value key);
  // Whether every token t0..tMax may attend every key keyStart..keyStart+count-1
  // (all inside [0, kvLen)): the chunk needs no mask. Uniform across the CTA.
  mlir::Value chunkFullyVisible(mlir::Value keyStart, int count);

private:
  mlir::Value windowStart();

  IRBuilderHelpers &h;
  const KernelSpec &spec;
  IndexInput idx;
  mlir::Value kvLen, batch, kvHead, t0, tMax;
};

} // namespace nsajit::tpl
