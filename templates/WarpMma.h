// Warp-scope tensor-core primitives: m16n8k16 mma.sync with fp32 accumulation
// and the fragment loads/packing it needs. Fragment layouts (PTX ISA, "Matrix
// fragments for mma.m16n8k16"): lane = 4 * group + tig;
//   A (row-major 16x16): a0 = (group, 2tig..2tig+1), a1 = (group+8, same),
//                        a2 = (group, 8+2tig..), a3 = (group+8, 8+2tig..)
//   B (col-major 16x8):  b0 = (k = 2tig..2tig+1, n = group), b1 = (k = 8+2tig.., n = group)
//   C/D (16x8 fp32):     c0,c1 = (group, 2tig..2tig+1), c2,c3 = (group+8, same)
#pragma once

#include "IRBuilderHelpers.h"

#include "nsajit/compiler/KernelSpec.h"

#include <array>

namespace nsajit::tpl {

using Frag4 = std::array<mlir::Value, 4>; // 4 x i32 (A) or 4 x f32 (C/D)
using Frag2 = std::array<mlir::Value, 2>; // 2 x i32 (B)

class WarpMma {
public:
  WarpMma(IRBuilderHelpers &h, DType dtype) : h(h), dtype(dtype) {}

  mlir::Type elementType() {
    return dtype == DType::BF16 ? mlir::Type(h.b.getBF16Type()) : mlir::Type(h.b.getF16Type());
  }

  // D = A * B + C on one m16n8k16 tile; A and B as packed i32 pairs.
  Frag4 mma(const Frag4 &a, const Frag2 &bf, const Frag4 &c);

  // Two fp32 values -> one i32 holding two 16-bit values (first in the low half).
  mlir::Value packFloats(mlir::Value lo, mlir::Value hi);
  // 32-bit load of two adjacent 16-bit elements from shared memory.
  mlir::Value loadPair(mlir::Value smem, mlir::Value elemOffset);
  // One 16-bit element (i16 bits of bf16/fp16) -> f32.
  mlir::Value halfToFloat(mlir::Value bits);
  // 16-bit load from shared memory.
  mlir::Value loadHalf(mlir::Value smem, mlir::Value elemOffset);
  // ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: four 8x8 matrices of 16-bit
  // elements; lane l passes the start (16-byte aligned) of row l % 8 of matrix l / 8
  // and gets register i from matrix i: (row l / 4, columns 2(l % 4)..+1), or with
  // `trans` (rows 2(l % 4)..+1, column l / 4). One instruction replaces four 32-bit
  // (or eight 16-bit, transposed) shared loads.
  Frag4 loadMatrices(mlir::Value smem, mlir::Value rowElemOffset, bool trans);

private:
  mlir::Value asOperand(mlir::Value packed); // i32 for bf16, vector<2xf16> for fp16
  IRBuilderHelpers &h;
  DType dtype;
};

} // namespace nsajit::tpl
