#include "Compression.h"

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"
#include "WarpMma.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;

namespace nsajit::tpl {
namespace {

enum Ptr { X, Y, DY, DX, W, DW };

class CompressionKernelBuilder {
public:
  CompressionKernelBuilder(OpBuilder &b, Location loc, const KernelSpec &spec, StringRef name)
      : name(name.str()), h(b, loc), mma(h, spec.dtype), spec(spec), D(spec.headDimQK), L(spec.cmpBlock),
        S(spec.cmpStride), threads(spec.tile.warps * 32) {}

  LogicalResult build();

private:
  Value offset(int t, Value bIdx, Value row, Value head) {
    return h.add(h.add(h.mul(h.ext64(bIdx), str[t][0]), h.mul(h.ext64(row), str[t][1])), h.mul(h.ext64(head), str[t][2]));
  }
  // Weight of block position p: w[p], or 1/l for the mean.
  Value weight(Value p) {
    if (!spec.cmpWeighted) return h.cf(1.0f / float(L));
    return h.load(h.f32(), h.gep(ptr[W], h.f32(), p), 4);
  }
  Value loadElem(int t, Value off) { return mma.halfToFloat(h.load(h.i16(), h.gep(ptr[t], h.i16(), off), 2)); }
  // For each element e of the head dim this thread owns: body(e).
  void forDims(const std::function<void(Value)> &body) {
    scf::ForOp::create(h.b, h.loc, ids.tid, h.c32(D), h.c32(threads), ValueRange{},
                       [&](OpBuilder &, Location, Value e, ValueRange) {
                         body(e);
                         scf::YieldOp::create(h.b, h.loc);
                       });
  }
  void storeElem(int t, Value off, Value v) {
    Value half = arith::TruncFOp::create(h.b, h.loc, mma.elementType(), v);
    h.store(arith::BitcastOp::create(h.b, h.loc, h.i16(), half), h.gep(ptr[t], h.i16(), off), 2);
  }
  void buildPool();
  void buildPoolBackward();
  void buildWeightGrad();

  std::string name;
  IRBuilderHelpers h;
  WarpMma mma;
  const KernelSpec &spec;
  const int D, L, S, threads;
  ThreadIds ids;
  Value ptr[6], str[4][3], seqLen, cmpLen, batchCount, heads, smem;
};

void CompressionKernelBuilder::buildPool() {
  Value i = h.blockIdX(), head = h.blockIdY(), b = h.blockIdZ();
  forDims([&](Value e) {
    Value first = h.mul(i, h.c32(S));
    auto loop = scf::ForOp::create(h.b, h.loc, h.c32(0), h.c32(L), h.c32(1), ValueRange{h.cf(0.0f)},
                                   [&](OpBuilder &, Location, Value p, ValueRange acc) {
                                     Value x = loadElem(X, h.add(offset(X, b, h.add(first, p), head), h.ext64(e)));
                                     scf::YieldOp::create(h.b, h.loc, ValueRange{h.fadd(acc[0], h.fmul(weight(p), x))});
                                   });
    storeElem(Y, h.add(offset(Y, b, i, head), h.ext64(e)), loop.getResult(0));
  });
}

// dx[t] = sum over compressed tokens i with 0 <= t - i*d < l (and i < Tc) of w[t - i*d] dy[i].
void CompressionKernelBuilder::buildPoolBackward() {
  Value t = h.blockIdX(), head = h.blockIdY(), b = h.blockIdZ();
  Value past = h.sub(t, h.c32(L - 1));
  Value iLo = h.select(h.gt(past, h.c32(0)), h.ceilDiv(past, h.c32(S)), h.c32(0));
  Value iHi = h.mins(h.sub(cmpLen, h.c32(1)), h.divs(t, h.c32(S)));
  forDims([&](Value e) {
    auto loop = scf::ForOp::create(h.b, h.loc, iLo, h.add(iHi, h.c32(1)), h.c32(1), ValueRange{h.cf(0.0f)},
                                   [&](OpBuilder &, Location, Value i, ValueRange acc) {
                                     Value dy = loadElem(DY, h.add(offset(DY, b, i, head), h.ext64(e)));
                                     Value w = weight(h.sub(t, h.mul(i, h.c32(S))));
                                     scf::YieldOp::create(h.b, h.loc, ValueRange{h.fadd(acc[0], h.fmul(w, dy))});
                                   });
    storeElem(DX, h.add(offset(DX, b, t, head), h.ext64(e)), loop.getResult(0));
  });
}

// dw[p]: every thread sums a fixed slice of (row, e), then a fixed-order tree.
void CompressionKernelBuilder::buildWeightGrad() {
  Value p = h.blockIdX();
  Value rows = h.mul(h.mul(batchCount, cmpLen), heads);
  Value total = h.mul(rows, h.c32(D));
  auto loop = scf::ForOp::create(
      h.b, h.loc, ids.tid, total, h.c32(threads), ValueRange{h.cf(0.0f)}, [&](OpBuilder &, Location, Value k, ValueRange acc) {
        Value e = h.rems(k, h.c32(D)), r = h.divs(k, h.c32(D));
        Value head = h.rems(r, heads), bi = h.divs(r, heads);
        Value i = h.rems(bi, cmpLen), b = h.divs(bi, cmpLen);
        Value dy = loadElem(DY, h.add(offset(DY, b, i, head), h.ext64(e)));
        Value x = loadElem(X, h.add(offset(X, b, h.add(h.mul(i, h.c32(S)), p), head), h.ext64(e)));
        scf::YieldOp::create(h.b, h.loc, ValueRange{h.fadd(acc[0], h.fmul(dy, x))});
      });
  Value sum = loop.getResult(0);
  for (int mask : {16, 8, 4, 2, 1}) sum = h.fadd(sum, h.shflXor(sum, mask));
  scf::IfOp::create(h.b, h.loc, h.eq(ids.lane, h.c32(0)), [&](OpBuilder &, Location) {
    h.store(sum, h.gep(smem, h.f32(), ids.warp), 4);
    scf::YieldOp::create(h.b, h.loc);
  });
  h.barrier();
  scf::IfOp::create(h.b, h.loc, h.eq(ids.tid, h.c32(0)), [&](OpBuilder &, Location) {
    Value acc = h.cf(0.0f);
    for (int w = 0; w < threads / 32; ++w) acc = h.fadd(acc, h.load(h.f32(), h.gep(smem, h.f32(), h.c32(w)), 4));
    h.store(acc, h.gep(ptr[DW], h.f32(), p), 4);
    scf::YieldOp::create(h.b, h.loc);
  });
}

LogicalResult CompressionKernelBuilder::build() {
  OpBuilder &b = h.b;
  Operation *gpuModule = b.getInsertionBlock()->getParentOp();
  if (!isa<gpu::GPUModuleOp>(gpuModule))
    return emitError(h.loc, "buildCompressionKernel must be called inside a gpu.module");
  if (spec.pass == KernelPass::CompressWeightGrad && !spec.cmpWeighted)
    return emitError(h.loc, "the weight gradient exists for weighted pooling only: ") << spec.str();
  declareSharedMemory(h, gpuModule);
  Block &entry = *createKernelFunction(h, name, 6, 12, 4, threads);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&entry);
  auto args = entry.getArguments();
  for (int i = 0; i < 6; ++i) ptr[i] = args[i];
  for (int t = 0; t < 4; ++t)
    for (int d = 0; d < 3; ++d) str[t][d] = args[6 + 3 * t + d];
  seqLen = args[18], cmpLen = args[19], batchCount = args[20], heads = args[21];
  ids = ThreadIds::read(h);
  smem = sharedMemoryBase(h, gpuModule);
  switch (spec.pass) {
  case KernelPass::Compress: buildPool(); break;
  case KernelPass::CompressBackward: buildPoolBackward(); break;
  case KernelPass::CompressWeightGrad: buildWeightGrad(); break;
  default: return emitError(h.loc, "not a compression kernel: ") << spec.str();
  }
  gpu::ReturnOp::create(b, h.loc);
  return success();
}

} // namespace

LogicalResult buildCompressionKernel(OpBuilder &builder, Location loc, const KernelSpec &spec, StringRef name) {
  return CompressionKernelBuilder(builder, loc, spec, name).build();
}

} // namespace nsajit::tpl
