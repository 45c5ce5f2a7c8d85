// Thread-scope building blocks for the kernel templates: integer and float
// arithmetic, global/shared memory access and NVVM special registers, emitted
// as arith/LLVM/NVVM ops. Keeps the kernel skeletons readable.
#pragma once

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/IR/Builders.h"

#include <string>

namespace nsajit::tpl {

// Address spaces of the NVPTX back end.
inline constexpr unsigned kGlobal = 1;
inline constexpr unsigned kShared = 3;

class IRBuilderHelpers {
public:
  IRBuilderHelpers(mlir::OpBuilder &b, mlir::Location loc) : b(b), loc(loc) {}

  mlir::OpBuilder &b;
  mlir::Location loc;

  // Types.
  mlir::Type i1() { return b.getI1Type(); }
  mlir::Type i16() { return b.getI16Type(); }
  mlir::Type i32() { return b.getI32Type(); }
  mlir::Type i64() { return b.getI64Type(); }
  mlir::Type f32() { return b.getF32Type(); }
  mlir::Type ptr(unsigned addrSpace) { return mlir::LLVM::LLVMPointerType::get(b.getContext(), addrSpace); }

  // Constants.
  mlir::Value c32(int64_t v) { return mlir::arith::ConstantIntOp::create(b, loc, v, 32); }
  mlir::Value c64(int64_t v) { return mlir::arith::ConstantIntOp::create(b, loc, v, 64); }
  mlir::Value cf(float v) { return mlir::arith::ConstantFloatOp::create(b, loc, b.getF32Type(), llvm::APFloat(v)); }
  mlir::Value cbool(bool v) { return mlir::arith::ConstantIntOp::create(b, loc, v ? 1 : 0, 1); }

  // Integer arithmetic (signed).
  mlir::Value add(mlir::Value x, mlir::Value y) { return mlir::arith::AddIOp::create(b, loc, x, y); }
  mlir::Value sub(mlir::Value x, mlir::Value y) { return mlir::arith::SubIOp::create(b, loc, x, y); }
  mlir::Value mul(mlir::Value x, mlir::Value y) { return mlir::arith::MulIOp::create(b, loc, x, y); }
  mlir::Value divs(mlir::Value x, mlir::Value y) { return mlir::arith::DivSIOp::create(b, loc, x, y); }
  mlir::Value rems(mlir::Value x, mlir::Value y) { return mlir::arith::RemSIOp::create(b, loc, x, y); }
  mlir::Value mins(mlir::Value x, mlir::Value y) { return mlir::arith::MinSIOp::create(b, loc, x, y); }
  mlir::Value maxs(mlir::Value x, mlir::Value y) { return mlir::arith::MaxSIOp::create(b, loc, x, y); }
  mlir::Value shl(mlir::Value x, mlir::Value y) { return mlir::arith::ShLIOp::create(b, loc, x, y); }
  mlir::Value shrui(mlir::Value x, mlir::Value y) { return mlir::arith::ShRUIOp::create(b, loc, x, y); }
  mlir::Value bor(mlir::Value x, mlir::Value y) { return mlir::arith::OrIOp::create(b, loc, x, y); }
  mlir::Value band(mlir::Value x, mlir::Value y) { return mlir::arith::AndIOp::create(b, loc, x, y); }
  mlir::Value bnot(mlir::Value x) { return mlir::arith::XOrIOp::create(b, loc, x, cbool(true)); } // an i1
  mlir::Value ext64(mlir::Value x) { return mlir::arith::ExtSIOp::create(b, loc, b.getI64Type(), x); }
  mlir::Value trunc32(mlir::Value x) { return mlir::arith::TruncIOp::create(b, loc, b.getI32Type(), x); }
  mlir::Value zext32(mlir::Value x) { return mlir::arith::ExtUIOp::create(b, loc, b.getI32Type(), x); }
  mlir::Value lt(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::slt, x, y);
  }
  mlir::Value le(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::sle, x, y);
  }
  mlir::Value ge(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::sge, x, y);
  }
  mlir::Value gt(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::sgt, x, y);
  }
  mlir::Value eq(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::eq, x, y);
  }
  mlir::Value ne(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::ne, x, y);
  }
  mlir::Value select(mlir::Value c, mlir::Value x, mlir::Value y) {
    return mlir::arith::SelectOp::create(b, loc, c, x, y);
  }
  // ceil(x / y) for non-negative x and positive y.
  mlir::Value ceilDiv(mlir::Value x, mlir::Value y) { return divs(add(x, sub(y, one(x))), y); }
  mlir::Value one(mlir::Value like) { return like.getType().isInteger(64) ? c64(1) : c32(1); }

  // Float arithmetic.
  mlir::Value fadd(mlir::Value x, mlir::Value y) { return mlir::arith::AddFOp::create(b, loc, x, y); }
  mlir::Value fsub(mlir::Value x, mlir::Value y) { return mlir::arith::SubFOp::create(b, loc, x, y); }
  mlir::Value fmul(mlir::Value x, mlir::Value y) { return mlir::arith::MulFOp::create(b, loc, x, y); }
  mlir::Value fdiv(mlir::Value x, mlir::Value y) { return mlir::arith::DivFOp::create(b, loc, x, y); }
  // llvm.maxnum (PTX max.f32); arith.maxnumf would become a libdevice call.
  mlir::Value fmax(mlir::Value x, mlir::Value y) { return mlir::LLVM::MaxNumOp::create(b, loc, x, y); }
  // x * y + z, one rounding (fma.rn.f32).
  mlir::Value fma(mlir::Value x, mlir::Value y, mlir::Value z) { return mlir::LLVM::FMAOp::create(b, loc, x, y, z); }
  mlir::Value feq(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpFOp::create(b, loc, mlir::arith::CmpFPredicate::OEQ, x, y);
  }
  mlir::Value fgt(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpFOp::create(b, loc, mlir::arith::CmpFPredicate::OGT, x, y);
  }
  // 2^x and log2(x) through the PTX approximations: no libdevice needed.
  mlir::Value exp2(mlir::Value x) { return intrinsic("llvm.nvvm.ex2.approx.ftz.f", x); }
  mlir::Value log2(mlir::Value x) { return intrinsic("llvm.nvvm.lg2.approx.ftz.f", x); }
  mlir::Value intrinsic(llvm::StringRef name, mlir::Value x) {
    return mlir::LLVM::CallIntrinsicOp::create(b, loc, x.getType(), b.getStringAttr(name), mlir::ValueRange{x})
        .getResult(0);
  }

  // Special registers and warp/CTA synchronisation.
  mlir::Value threadIdX() { return mlir::NVVM::ThreadIdXOp::create(b, loc, i32()); }
  mlir::Value blockIdX() { return mlir::NVVM::BlockIdXOp::create(b, loc, i32()); }
  mlir::Value blockIdY() { return mlir::NVVM::BlockIdYOp::create(b, loc, i32()); }
  mlir::Value blockIdZ() { return mlir::NVVM::BlockIdZOp::create(b, loc, i32()); }
  mlir::Value gridDimX() { return mlir::NVVM::GridDimXOp::create(b, loc, i32()); }
  mlir::Value gridDimY() { return mlir::NVVM::GridDimYOp::create(b, loc, i32()); }
  mlir::Value gridDimZ() { return mlir::NVVM::GridDimZOp::create(b, loc, i32()); }
  void barrier() { mlir::NVVM::Barrier0Op::create(b, loc); }
  // Named barrier `id` (1..15) that `threads` threads (whole warps) meet: the
  // warps of one role in a warp-specialised kernel, without the others. Not
  // bar.sync (barrier.sync.aligned): LLVM may copy the inline asm into both
  // sides of a branch the lanes of a warp diverge on, and an aligned barrier
  // reached from two places hangs (it did, s12run1).
  void namedBarrier(int id, int threads) {
    inlineAsm({}, {}, "barrier.sync " + std::to_string(id) + ", " + std::to_string(threads) + ";", "");
  }
  // Arrives at named barrier `id` without waiting: the other `threads` minus
  // these wait there (barrier.arrive, not the aligned bar.arrive: see above).
  void namedArrive(int id, int threads) {
    inlineAsm({}, {}, "barrier.arrive " + std::to_string(id) + ", " + std::to_string(threads) + ";", "");
  }
  // Whether `pred` holds for any of the `threads` threads (whole warps) that
  // meet at named barrier `id` (1..15): barrier.red.or (not the aligned
  // bar.red, for the reason namedBarrier gives). An immediate id: with a
  // register one ptxas reserves all 16 barriers, so one CTA an SM.
  mlir::Value anyAtBarrier(mlir::Value pred, int id, int threads) {
    mlir::Value in = mlir::arith::ExtUIOp::create(b, loc, i32(), pred);
    mlir::Value out = inlineAsm({i32()}, {in},
                                "{ .reg .pred p, q; setp.ne.u32 p, $1, 0; barrier.red.or.pred q, " +
                                    std::to_string(id) + ", " + std::to_string(threads) + ", p; selp.u32 $0, 1, 0, q; }",
                                "=r,r")
                          .getResult(0);
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::ne, out, c32(0));
  }
  // __syncwarp(): orders the shared-memory accesses of the lanes of a warp.
  void syncWarp() { mlir::NVVM::SyncWarpOp::create(b, loc, c32(-1)); }
  // Butterfly shuffle across the full warp.
  mlir::Value shflXor(mlir::Value v, int laneMask) {
    return mlir::NVVM::ShflOp::create(b, loc, v.getType(), c32(-1), v, c32(laneMask), c32(31),
                                      mlir::NVVM::ShflKindAttr::get(b.getContext(), mlir::NVVM::ShflKind::bfly),
                                      mlir::UnitAttr())
        .getResult();
  }

  // Lane l gets v of lane l - delta (lanes below delta keep their own).
  mlir::Value shflUp(mlir::Value v, int delta) {
    return mlir::NVVM::ShflOp::create(b, loc, v.getType(), c32(-1), v, c32(delta), c32(0),
                                      mlir::NVVM::ShflKindAttr::get(b.getContext(), mlir::NVVM::ShflKind::up),
                                      mlir::UnitAttr())
        .getResult();
  }

  // One PTX statement as volatile inline asm ($0.. name the results, then the
  // operands, by `constraints`); returns the op (a struct when several results).
  mlir::LLVM::InlineAsmOp inlineAsm(mlir::TypeRange results, mlir::ValueRange operands, llvm::StringRef text,
                                    llvm::StringRef constraints) {
    return mlir::LLVM::InlineAsmOp::create(b, loc, results, operands, text, constraints, /*has_side_effects=*/true,
                                           /*is_align_stack=*/false, mlir::LLVM::tailcallkind::TailCallKind::None,
                                           mlir::LLVM::AsmDialectAttr(), mlir::ArrayAttr());
  }

  // Whether a pointer argument is non-null (optional tensors).
  mlir::Value nonNull(mlir::Value p) {
    mlir::Value i = mlir::LLVM::PtrToIntOp::create(b, loc, i64(), p);
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::ne, i, c64(0));
  }
  mlir::Value ult(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::ult, x, y);
  }

  // Memory: typed element pointer arithmetic and loads/stores.
  mlir::Value gep(mlir::Value base, mlir::Type elemType, mlir::Value offset) {
    return mlir::LLVM::GEPOp::create(b, loc, base.getType(), elemType, base, mlir::ValueRange{offset});
  }
  mlir::Value load(mlir::Type t, mlir::Value p, unsigned align) {
    return mlir::LLVM::LoadOp::create(b, loc, t, p, align);
  }
  void store(mlir::Value v, mlir::Value p, unsigned align) { mlir::LLVM::StoreOp::create(b, loc, v, p, align); }
};

} // namespace nsajit::tpl
