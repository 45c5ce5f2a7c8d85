#include "WarpMma.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"

using namespace mlir;

namespace nsajit::tpl {

Value WarpMma::asOperand(Value packed) {
  if (dtype == DType::BF16)
    return packed;
  auto v2f16 = VectorType::get({2}, h.b.getF16Type());
  return LLVM::BitcastOp::create(h.b, h.loc, v2f16, packed);
}

Frag4 WarpMma::mma(const Frag4 &a, const Frag2 &bf, const Frag4 &c) {
  auto f32 = h.f32();
  auto resTy = LLVM::LLVMStructType::getLiteral(h.b.getContext(), {f32, f32, f32, f32});
  SmallVector<Value> aOps, bOps;
  for (Value v : a) aOps.push_back(asOperand(v));
  for (Value v : bf) bOps.push_back(asOperand(v));
  auto ptxType = dtype == DType::BF16 ? NVVM::MMATypes::bf16 : NVVM::MMATypes::f16;
  auto op = NVVM::MmaOp::create(h.b, h.loc, resTy, aOps, bOps, ValueRange{c[0], c[1], c[2], c[3]},
                                ArrayRef<int64_t>{16, 8, 16}, std::nullopt, std::nullopt,
                                std::array<NVVM::MMATypes, 2>{ptxType, ptxType},
                                std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
  Frag4 d;
  for (int i = 0; i < 4; ++i)
    d[i] = LLVM::ExtractValueOp::create(h.b, h.loc, op.getResult(), ArrayRef<int64_t>{i});
  return d;
}

Value WarpMma::packFloats(Value lo, Value hi) {
  // One rounding conversion of the pair (the first operand goes to the high half).
  const char *text = dtype == DType::BF16 ? "cvt.rn.bf16x2.f32 $0, $2, $1;" : "cvt.rn.f16x2.f32 $0, $2, $1;";
  return h.inlineAsm(h.i32(), ValueRange{lo, hi}, text, "=r,f,f").getResult(0);
}

Value WarpMma::halfToFloat(Value bits) {
  Value half = arith::BitcastOp::create(h.b, h.loc, elementType(), bits);
  return arith::ExtFOp::create(h.b, h.loc, h.f32(), half);
}

Value WarpMma::loadPair(Value smem, Value elemOffset) {
  return h.load(h.i32(), h.gep(smem, h.i16(), elemOffset), 4);
}

Value WarpMma::loadHalf(Value smem, Value elemOffset) {
  return h.load(h.i16(), h.gep(smem, h.i16(), elemOffset), 2);
}

Frag4 WarpMma::loadMatrices(Value smem, Value rowElemOffset, bool trans) {
  auto i32 = h.i32();
  auto resTy = LLVM::LLVMStructType::getLiteral(h.b.getContext(), {i32, i32, i32, i32});
  MLIRContext *ctx = h.b.getContext();
  auto op = NVVM::LdMatrixOp::create(
      h.b, h.loc, resTy, h.gep(smem, h.i16(), rowElemOffset), h.b.getI32IntegerAttr(4),
      NVVM::MMALayoutAttr::get(ctx, trans ? NVVM::MMALayout::col : NVVM::MMALayout::row),
      NVVM::LdStMatrixShapeAttr::get(ctx, 8, 8),
      NVVM::LdStMatrixEltTypeAttr::get(ctx, NVVM::LdStMatrixEltType::B16));
  Frag4 r;
  for (int i = 0; i < 4; ++i)
    r[i] = LLVM::ExtractValueOp::create(h.b, h.loc, op.getResult(), ArrayRef<int64_t>{i});
  return r;
}

} // namespace nsajit::tpl
