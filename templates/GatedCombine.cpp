#include "GatedCombine.h"

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"
#include "WarpMma.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;

namespace nsajit::tpl {
namespace {

// CombineKernelArgs, in order: the three outputs, their gates, the result.
enum Tensor { OC, OS, OW, GC, GS, GW, OUT, kNumTensors };
constexpr int kVecElems = 8; // 16-byte vectors of 16-bit elements

class CombineKernelBuilder {
public:
  CombineKernelBuilder(OpBuilder &b, Location loc, const KernelSpec &spec, StringRef name)
      : name(name.str()), h(b, loc), mma(h, spec.dtype), spec(spec), Dv(spec.headDimV) {}

  LogicalResult build();

private:
  Value offset(int t, Value bIdx, Value tok, Value head) {
    return h.add(h.add(h.mul(h.ext64(bIdx), str[t][0]), h.mul(h.ext64(tok), str[t][1])), h.mul(h.ext64(head), str[t][2]));
  }

  std::string name;
  IRBuilderHelpers h;
  WarpMma mma;
  const KernelSpec &spec;
  const int Dv;
  Value ptr[kNumTensors], str[kNumTensors][3];
};

LogicalResult CombineKernelBuilder::build() {
  OpBuilder &b = h.b;
  Operation *gpuModule = b.getInsertionBlock()->getParentOp();
  if (!isa<gpu::GPUModuleOp>(gpuModule))
    return emitError(h.loc, "buildCombineKernel must be called inside a gpu.module");
  if (spec.tile.warps < 1 || Dv % kVecElems != 0)
    return emitError(h.loc, "inconsistent combine tile: ") << spec.str();
  const int threads = spec.tile.warps * 32;
  Block &entry = *createKernelFunction(h, name, kNumTensors, 3 * kNumTensors, 3, threads);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&entry);
  auto args = entry.getArguments();
  for (int t = 0; t < kNumTensors; ++t) {
    ptr[t] = args[t];
    for (int d = 0; d < 3; ++d) str[t][d] = args[kNumTensors + 3 * t + d];
  }
  Value seqLen = args[4 * kNumTensors], heads = args[4 * kNumTensors + 1], batchCount = args[4 * kNumTensors + 2];
  ThreadIds ids = ThreadIds::read(h);

  // Thread i of the grid: vector i % (Dv / 8) of row i / (Dv / 8), rows (batch, token, head) in order.
  const int vecsPerRow = Dv / kVecElems;
  Value i = h.add(h.mul(h.ext64(h.blockIdX()), h.c64(threads)), h.ext64(ids.tid));
  Value row = h.divs(i, h.c64(vecsPerRow));
  Value rows = h.mul(h.mul(h.ext64(batchCount), h.ext64(seqLen)), h.ext64(heads));
  scf::IfOp::create(h.b, h.loc, h.lt(row, rows), [&](OpBuilder &, Location) {
    Value head = arith::TruncIOp::create(h.b, h.loc, h.i32(), h.rems(row, h.ext64(heads)));
    Value rowTok = h.divs(row, h.ext64(heads));
    Value tok = arith::TruncIOp::create(h.b, h.loc, h.i32(), h.rems(rowTok, h.ext64(seqLen)));
    Value bIdx = arith::TruncIOp::create(h.b, h.loc, h.i32(), h.divs(rowTok, h.ext64(seqLen)));
    Value col = h.mul(h.rems(i, h.c64(vecsPerRow)), h.c64(kVecElems));
    auto vecTy = VectorType::get({kVecElems}, mma.elementType());
    auto vecF32 = VectorType::get({kVecElems}, h.f32());
    // One gated term: f32(round(g * o)), or f32(o) without a gate (g = 1 is exact).
    auto term = [&](int o, int g) -> Value {
      Value x = h.load(vecTy, h.gep(ptr[o], h.i16(), h.add(offset(o, bIdx, tok, head), col)), 16);
      Value xf = arith::ExtFOp::create(h.b, h.loc, vecF32, x).getResult();
      auto gated = scf::IfOp::create(
          h.b, h.loc, h.nonNull(ptr[g]),
          [&](OpBuilder &, Location) {
            Value gate = h.load(h.f32(), h.gep(ptr[g], h.f32(), offset(g, bIdx, tok, head)), 4);
            Value splat = LLVM::PoisonOp::create(h.b, h.loc, vecF32).getResult();
            for (int e = 0; e < kVecElems; ++e)
              splat = LLVM::InsertElementOp::create(h.b, h.loc, splat, gate, h.c32(e)).getResult();
            Value prod = arith::MulFOp::create(h.b, h.loc, xf, splat).getResult();
            Value rounded = arith::TruncFOp::create(h.b, h.loc, vecTy, prod).getResult();
            scf::YieldOp::create(h.b, h.loc, ValueRange{arith::ExtFOp::create(h.b, h.loc, vecF32, rounded).getResult()});
          },
          [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, ValueRange{xf}); });
      return gated.getResult(0);
    };
    Value sum = term(OC, GC);
    sum = arith::AddFOp::create(h.b, h.loc, sum, term(OS, GS)).getResult();
    sum = arith::AddFOp::create(h.b, h.loc, sum, term(OW, GW)).getResult();
    Value out = arith::TruncFOp::create(h.b, h.loc, vecTy, sum).getResult();
    h.store(out, h.gep(ptr[OUT], h.i16(), h.add(offset(OUT, bIdx, tok, head), col)), 16);
    scf::YieldOp::create(h.b, h.loc);
  });
  gpu::ReturnOp::create(b, h.loc);
  return success();
}

} // namespace

LogicalResult buildCombineKernel(OpBuilder &builder, Location loc, const KernelSpec &spec, StringRef name) {
  return CombineKernelBuilder(builder, loc, spec, name).build();
}

} // namespace nsajit::tpl
