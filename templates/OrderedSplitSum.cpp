#include "OrderedSplitSum.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;

namespace nsajit::tpl {

namespace {
constexpr int kHoldsDataBit = 1 << 30;
} // namespace

Value OrderedSplitSum::waitForTurn(Value split) {
  scf::IfOp::create(h.b, h.loc, h.eq(ids.tid, h.c32(0)), [&](OpBuilder &, Location) {
    auto spin = scf::WhileOp::create(
        h.b, h.loc, TypeRange{h.i32()}, ValueRange{h.c32(0)},
        [&](OpBuilder &, Location, ValueRange) {
          Value word = h.inlineAsm(h.i32(), ValueRange{counter}, "ld.acquire.gpu.global.b32 $0, [$1];", "=r,l")
                           .getResult(0);
          Value turn = h.band(word, h.c32(kHoldsDataBit - 1));
          scf::ConditionOp::create(h.b, h.loc, h.ne(turn, split), ValueRange{word});
        },
        [&](OpBuilder &, Location, ValueRange word) {
          h.inlineAsm({}, ValueRange{}, "nanosleep.u32 64;", "");
          scf::YieldOp::create(h.b, h.loc, word);
        });
    h.store(spin.getResult(0), turnSlot, 4);
    scf::YieldOp::create(h.b, h.loc);
  });
  h.barrier();
  // The acquire was thread 0's; order this thread's workspace reads after it too.
  h.inlineAsm({}, ValueRange{}, "fence.acq_rel.gpu;", "");
  Value word = h.load(h.i32(), turnSlot, 4);
  return h.ne(h.band(word, h.c32(kHoldsDataBit)), h.c32(0));
}

Value OrderedSplitSum::nextTurn(Value split, Value holdsData) {
  return h.bor(h.add(split, h.c32(1)), h.select(holdsData, h.c32(kHoldsDataBit), h.c32(0)));
}

void OrderedSplitSum::passTurn(Value next) {
  h.inlineAsm({}, ValueRange{}, "fence.acq_rel.gpu;", "");
  h.barrier();
  scf::IfOp::create(h.b, h.loc, h.eq(ids.tid, h.c32(0)), [&](OpBuilder &, Location) {
    h.inlineAsm({}, ValueRange{counter, next}, "st.release.gpu.global.b32 [$0], $1;", "l,r");
    scf::YieldOp::create(h.b, h.loc);
  });
}

std::pair<Value, Value> OrderedSplitSum::loadPair(Value ptr) {
  auto pairTy = LLVM::LLVMStructType::getLiteral(h.b.getContext(), {h.f32(), h.f32()});
  auto op = h.inlineAsm(pairTy, ValueRange{ptr}, "ld.global.cg.v2.f32 {$0, $1}, [$2];", "=f,=f,l");
  Value a = LLVM::ExtractValueOp::create(h.b, h.loc, op.getResult(0), ArrayRef<int64_t>{0});
  Value b = LLVM::ExtractValueOp::create(h.b, h.loc, op.getResult(0), ArrayRef<int64_t>{1});
  return {a, b};
}

void OrderedSplitSum::storePair(Value ptr, Value a, Value b) {
  h.inlineAsm({}, ValueRange{ptr, a, b}, "st.global.cg.v2.f32 [$0], {$1, $2};", "l,f,f");
}

} // namespace nsajit::tpl
