#include "KernelCommon.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/SymbolTable.h"

#include <cassert>

using namespace mlir;

namespace nsajit::tpl {

ThreadIds ThreadIds::read(IRBuilderHelpers &h) {
  ThreadIds ids;
  ids.tid = h.threadIdX();
  ids.warp = h.divs(ids.tid, h.c32(32));
  ids.lane = h.rems(ids.tid, h.c32(32));
  ids.group = h.divs(ids.lane, h.c32(4));
  ids.tig = h.rems(ids.lane, h.c32(4));
  return ids;
}

void declareSharedMemory(IRBuilderHelpers &h, Operation *gpuModule) {
  if (SymbolTable::lookupSymbolIn(gpuModule, kSharedMemorySymbol))
    return;
  auto arrTy = LLVM::LLVMArrayType::get(h.b.getI8Type(), 0);
  LLVM::GlobalOp::create(h.b, h.loc, arrTy, /*isConstant=*/false, LLVM::Linkage::External, kSharedMemorySymbol,
                         Attribute(), /*alignment=*/1024, /*addrSpace=*/kShared); // swizzle atoms (wgmma)
}

Block *createKernelFunction(IRBuilderHelpers &h, StringRef name, int pointers, int strides, int ints, int threads) {
  SmallVector<Type> argTypes(pointers, h.ptr(kGlobal));
  argTypes.append(strides, h.i64());
  argTypes.append(ints, h.i32());
  auto fn = gpu::GPUFuncOp::create(h.b, h.loc, name, h.b.getFunctionType(argTypes, {}));
  fn->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), h.b.getUnitAttr());
  fn.setKnownBlockSizeAttr(h.b.getDenseI32ArrayAttr({threads, 1, 1}));
  return &fn.getBody().front();
}

Value sharedMemoryBase(IRBuilderHelpers &h, Operation *) {
  return LLVM::AddressOfOp::create(h.b, h.loc, h.ptr(kShared), kSharedMemorySymbol);
}

namespace {

// The 16-byte cp.async copies (L2 only) of the row at global element offset
// `rowOff`, columns col0 + 64 j (j < n), to shared elements dst0 + dstStep j; a
// missing row fills zeros and reads nothing. One 64-bit address a row, the
// copies at constant offsets from it (immediates of the copy instruction): H100,
// T = 64k, against an address a copy, window forward [paper] 3.56 -> 3.49 ms,
// [main] 3.16 -> 3.05, paper top-n 9.34 -> 9.07 (bench/results/2026-11-26-h100-session10/s10run2).
void copyRow(IRBuilderHelpers &h, Value smem, Value dst0, int dstStep, Value src, Value rowOff, Value valid, Value col0,
             int n) {
  auto cacheGlobal = NVVM::LoadCacheModifierKindAttr::get(h.b.getContext(), NVVM::LoadCacheModifierKind::CG);
  Value rowPtr = h.gep(src, h.i16(), h.select(valid, h.add(rowOff, h.ext64(col0)), h.c64(0)));
  Value dstPtr = h.gep(smem, h.i16(), dst0);
  Value bytes = h.select(valid, h.c32(16), h.c32(0));
  for (int j = 0; j < n; ++j)
    NVVM::CpAsyncOp::create(h.b, h.loc, h.gep(dstPtr, h.i16(), h.c32(dstStep * j)), h.gep(rowPtr, h.i16(), h.c64(64 * j)),
                            h.b.getI32IntegerAttr(16), cacheGlobal, bytes);
}

void finishStaging(IRBuilderHelpers &h, bool wait, bool commit) {
  if (commit)
    commitStaged(h);
  if (wait)
    waitStaged(h);
}

} // namespace

void stageRows(IRBuilderHelpers &h, const ThreadIds &ids, int threads, Value smem, Value smemElemBase, int pitch,
               int rows, int dim, Value src, const RowOffsetFn &rowOffset, bool wait, bool commit) {
  assert(dim % 64 == 0 && threads % 8 == 0 && "rows of 64-element panels, whole groups of 8 threads");
  // Thread tid copies 16-byte vectors tid % 8, tid % 8 + 8, ... of rows tid / 8,
  // tid / 8 + threads / 8, ...: one row offset serves the row's dim / 64 copies
  // (H100, T = 64k, selected branch Dk = 192, random indices: forward + backward
  // 95.1 -> 89.1 ms against an offset a copy; bench/results/2026-11-26-h100-session9/s9run4).
  Value vec = h.mul(h.rems(ids.tid, h.c32(8)), h.c32(8));
  scf::ForOp::create(h.b, h.loc, h.divs(ids.tid, h.c32(8)), h.c32(rows), h.c32(threads / 8), ValueRange{},
                     [&](OpBuilder &, Location, Value row, ValueRange) {
                       auto [off, valid] = rowOffset(row);
                       Value dst = h.add(smemElemBase, h.add(h.mul(row, h.c32(pitch)), vec));
                       copyRow(h, smem, dst, 64, src, off, valid, vec, dim / 64);
                       scf::YieldOp::create(h.b, h.loc);
                     });
  finishStaging(h, wait, commit);
}

void stageSwizzledPanels(IRBuilderHelpers &h, const ThreadIds &ids, int threads, Value smem, Value smemElemBase,
                         int rows, int dim, Value src, const RowOffsetFn &rowOffset, bool wait, bool commit,
                         bool unrolled) {
  // Thread tid stores chunk tid % 8 of rows tid / 8, tid / 8 + threads / 8, ... in
  // every panel: one row offset serves the row's dim / 64 copies. Chunk c of row
  // r holds the row's chunk c ^ (r % 8) of the panel's 64 columns; 8 threads read
  // one row's 128 bytes and consecutive threads write consecutive shared bytes.
  Value chunk = h.rems(ids.tid, h.c32(8));
  auto copy = [&](Value row) {
    auto [off, valid] = rowOffset(row);
    Value source = h.mul(arith::XOrIOp::create(h.b, h.loc, chunk, h.rems(row, h.c32(8))), h.c32(8));
    Value dst = h.add(smemElemBase, h.add(h.mul(row, h.c32(64)), h.mul(chunk, h.c32(8))));
    copyRow(h, smem, dst, 64 * rows, src, off, valid, source, dim / 64);
  };
  const int rowsAPass = threads / 8;
  if (unrolled && rows % rowsAPass == 0) {
    Value first = h.divs(ids.tid, h.c32(8));
    for (int pass = 0; pass < rows / rowsAPass; ++pass) copy(h.add(first, h.c32(pass * rowsAPass)));
  } else {
    scf::ForOp::create(h.b, h.loc, h.divs(ids.tid, h.c32(8)), h.c32(rows), h.c32(rowsAPass), ValueRange{},
                       [&](OpBuilder &, Location, Value row, ValueRange) {
                         copy(row);
                         scf::YieldOp::create(h.b, h.loc);
                       });
  }
  finishStaging(h, wait, commit);
}

void commitStaged(IRBuilderHelpers &h) { NVVM::CpAsyncCommitGroupOp::create(h.b, h.loc); }

void waitStaged(IRBuilderHelpers &h, int pending) {
  NVVM::CpAsyncWaitGroupOp::create(h.b, h.loc, h.b.getI32IntegerAttr(pending));
}

Value BranchKeys::numChunks() {
  int C = spec.tile.kvChunk;
  switch (spec.branch) {
  case Branch::Compressed: {
    // Compressed token i is complete for t when i*d + l - 1 <= t.
    Value sees = h.ge(tMax, h.c32(spec.cmpBlock - 1));
    Value span = h.maxs(h.sub(tMax, h.c32(spec.cmpBlock - 1)), h.c32(0));
    Value visibleCount = h.add(h.divs(span, h.c32(spec.cmpStride)), h.c32(1));
    visibleCount = h.select(sees, h.mins(visibleCount, kvLen), h.c32(0));
    return h.ceilDiv(visibleCount, h.c32(C));
  }
  case Branch::Window:
    return h.ceilDiv(h.add(h.sub(tMax, windowStart()), h.c32(1)), h.c32(C));
  case Branch::Selected:
    return h.c32(spec.slcCount * (spec.slcBlock / C));
  }
  return h.c32(0);
}

std::pair<Value, Value> BranchKeys::chunkStart(Value c) {
  int C = spec.tile.kvChunk;
  switch (spec.branch) {
  case Branch::Compressed:
    return {h.mul(c, h.c32(C)), h.cbool(true)};
  case Branch::Window:
    return {h.add(windowStart(), h.mul(c, h.c32(C))), h.cbool(true)};
  case Branch::Selected: {
    int chunksPerBlock = spec.slcBlock / C;
    Value slot = h.divs(c, h.c32(chunksPerBlock));
    Value sub = h.rems(c, h.c32(chunksPerBlock));
    Value off = h.add(h.add(h.mul(h.ext64(batch), idx.strides[0]), h.mul(h.ext64(t0), idx.strides[1])),
                      h.add(h.mul(h.ext64(kvHead), idx.strides[2]), h.ext64(slot)));
    Value blk = h.load(h.i32(), h.gep(idx.ptr, h.i32(), off), 4);
    Value active = h.band(h.ge(blk, h.c32(0)), h.le(blk, h.divs(tMax, h.c32(spec.slcBlock))));
    Value start = h.add(h.mul(blk, h.c32(spec.slcBlock)), h.mul(sub, h.c32(C)));
    return {h.select(active, start, h.c32(0)), active};
  }
  }
  return {h.c32(0), h.cbool(false)};
}

Value BranchKeys::visible(Value tok, Value key) {
  switch (spec.branch) {
  case Branch::Compressed:
    return h.le(h.add(h.mul(key, h.c32(spec.cmpStride)), h.c32(spec.cmpBlock - 1)), tok);
  case Branch::Window:
    return h.band(h.le(key, tok), h.gt(key, h.sub(tok, h.c32(spec.window))));
  case Branch::Selected:
    return h.le(key, tok);
  }
  return h.cbool(false);
}

Value BranchKeys::chunkFullyVisible(Value keyStart, int count) {
  Value last = h.add(keyStart, h.c32(count - 1));
  Value inRange = h.band(h.ge(keyStart, h.c32(0)), h.lt(last, kvLen));
  // visible(t, k) is monotone in both: the earliest token must see the last
  // key, and (window) the latest token the first key.
  Value seen = visible(t0, last);
  if (spec.branch == Branch::Window)
    seen = h.band(seen, visible(tMax, keyStart));
  return h.band(inRange, seen);
}

Value BranchKeys::windowStart() { return h.maxs(h.sub(t0, h.c32(spec.window - 1)), h.c32(0)); }

} // namespace nsajit::tpl
