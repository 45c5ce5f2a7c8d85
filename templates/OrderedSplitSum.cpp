#include "OrderedSplitSum.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

#include "fmt/format.h"

using namespace mlir;

namespace nsajit::tpl {

Value OrderedSplitSum::maskPtr() { return state; }
Value OrderedSplitSum::flagPtr() { return h.gep(state, h.i32(), h.c32(2)); }

void OrderedSplitSum::ifThread0(const std::function<void()> &body) {
  scf::IfOp::create(h.b, h.loc, h.eq(ids.tid, h.c32(0)), [&](OpBuilder &, Location) {
    body();
    scf::YieldOp::create(h.b, h.loc);
  });
}

Value OrderedSplitSum::waitForEarlier(Value split) {
  Value earlier = h.sub(h.shl(h.c64(1), h.ext64(split)), h.c64(1)); // bits 0 .. split - 1
  ifThread0([&] {
    scf::WhileOp::create(
        h.b, h.loc, TypeRange{}, ValueRange{},
        [&](OpBuilder &, Location, ValueRange) {
          Value mask = h.inlineAsm(h.i64(), ValueRange{maskPtr()}, "ld.acquire.gpu.global.b64 $0, [$1];", "=l,l")
                           .getResult(0);
          scf::ConditionOp::create(h.b, h.loc, h.ne(arith::AndIOp::create(h.b, h.loc, mask, earlier), earlier),
                                   ValueRange{});
        },
        [&](OpBuilder &, Location, ValueRange) {
          h.inlineAsm({}, ValueRange{}, "nanosleep.u32 64;", "");
          scf::YieldOp::create(h.b, h.loc, ValueRange{});
        });
    Value flag = h.inlineAsm(h.i32(), ValueRange{flagPtr()}, "ld.relaxed.gpu.global.b32 $0, [$1];", "=r,l")
                     .getResult(0);
    h.store(flag, scratch, 4);
  });
  h.barrier();
  // The acquire was thread 0's; order this thread's workspace reads after it too.
  h.inlineAsm({}, ValueRange{}, "fence.acq_rel.gpu;", "");
  return h.ne(h.load(h.i32(), scratch, 4), h.c32(0));
}

std::pair<Value, Value> OrderedSplitSum::arrive(Value split, Value splits, Value stored) {
  h.inlineAsm({}, ValueRange{}, "fence.acq_rel.gpu;", "");
  h.barrier(); // every thread's workspace stores are done (and fenced)
  Value bit = h.shl(h.c64(1), h.ext64(split));
  Value all = h.select(h.ge(splits, h.c32(64)), h.c64(-1), h.sub(h.shl(h.c64(1), h.ext64(splits)), h.c64(1)));
  Value flagSlot = h.gep(scratch, h.i32(), h.c32(1));
  ifThread0([&] {
    scf::IfOp::create(h.b, h.loc, stored, [&](OpBuilder &, Location) {
      h.inlineAsm({}, ValueRange{flagPtr(), h.c32(1)}, "st.relaxed.gpu.global.b32 [$0], $1;", "l,r");
      scf::YieldOp::create(h.b, h.loc);
    });
    Value old = h.inlineAsm(h.i64(), ValueRange{maskPtr(), bit}, "atom.acq_rel.gpu.global.or.b64 $0, [$1], $2;",
                            "=l,l,l")
                    .getResult(0);
    Value complete = h.eq(h.bor(old, bit), all);
    h.store(h.select(complete, h.c32(1), h.c32(0)), scratch, 4);
    Value flag = h.inlineAsm(h.i32(), ValueRange{flagPtr()}, "ld.relaxed.gpu.global.b32 $0, [$1];", "=r,l")
                     .getResult(0);
    h.store(flag, flagSlot, 4);
  });
  h.barrier();
  h.inlineAsm({}, ValueRange{}, "fence.acq_rel.gpu;", "");
  Value complete = h.ne(h.load(h.i32(), scratch, 4), h.c32(0));
  Value holdsData = h.ne(h.load(h.i32(), flagSlot, 4), h.c32(0));
  return {complete, holdsData};
}

std::pair<Value, Value> OrderedSplitSum::loadPair(Value base, int byteOffset) {
  auto pairTy = LLVM::LLVMStructType::getLiteral(h.b.getContext(), {h.f32(), h.f32()});
  auto op = h.inlineAsm(pairTy, ValueRange{base}, fmt::format("ld.global.cg.v2.f32 {{$0, $1}}, [$2+{}];", byteOffset),
                        "=f,=f,l");
  Value a = LLVM::ExtractValueOp::create(h.b, h.loc, op.getResult(0), ArrayRef<int64_t>{0});
  Value b = LLVM::ExtractValueOp::create(h.b, h.loc, op.getResult(0), ArrayRef<int64_t>{1});
  return {a, b};
}

void OrderedSplitSum::storePair(Value base, int byteOffset, Value a, Value b) {
  h.inlineAsm({}, ValueRange{base, a, b}, fmt::format("st.global.cg.v2.f32 [$0+{}], {{$1, $2}};", byteOffset), "l,f,f");
}

} // namespace nsajit::tpl
