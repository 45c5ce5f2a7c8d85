//===- NsaOps.cpp - nsa attention ops: builders, verifiers ------*- C++ -*-===//
//
// Every verifier message names the offending field and the allowed values.
//
//===----------------------------------------------------------------------===//

#include "nsa/NsaOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::nsa;

#include "nsa/NsaInterfaces.cpp.inc"

#define GET_OP_CLASSES
#include "nsa/NsaOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Formatting helpers
//===----------------------------------------------------------------------===//

namespace {

std::string joinInts(ArrayRef<int64_t> values) {
  std::string s;
  llvm::raw_string_ostream os(s);
  llvm::interleaveComma(values, os);
  return s;
}

std::string dimStr(int64_t d) {
  return ShapedType::isDynamic(d) ? std::string("?") : std::to_string(d);
}

std::string shapeStr(ArrayRef<int64_t> shape) {
  std::string s = "[";
  for (auto [i, d] : llvm::enumerate(shape)) {
    if (i)
      s += ", ";
    s += dimStr(d);
  }
  return s + "]";
}

/// Types as text (a Type streamed into a diagnostic gets quoted; element
/// types read better without).
std::string typeStr(Type t) {
  std::string s;
  llvm::raw_string_ostream os(s);
  t.print(os);
  return s;
}

std::string floatStr(const APFloat &v) {
  if (v.isNaN())
    return "nan";
  if (v.isInfinity())
    return v.isNegative() ? "-inf" : "inf";
  SmallString<16> s;
  v.toString(s);
  return std::string(s);
}

bool contains(ArrayRef<int64_t> allowed, int64_t v) {
  return llvm::is_contained(allowed, v);
}

/// Two dims are compatible when either is dynamic or they are equal.
bool compatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

bool isSupportedElementType(Type t) { return t.isBF16() || t.isF16(); }

} // namespace

//===----------------------------------------------------------------------===//
// Public helpers
//===----------------------------------------------------------------------===//

FailureOr<AttentionShape> mlir::nsa::getAttentionShape(Operation *op) {
  auto iface = dyn_cast_or_null<AttentionOpInterface>(op);
  if (!iface)
    return failure();
  auto qTy = dyn_cast<RankedTensorType>(iface.getQ().getType());
  auto kTy = dyn_cast<RankedTensorType>(iface.getK().getType());
  auto vTy = dyn_cast<RankedTensorType>(iface.getV().getType());
  if (!qTy || !kTy || !vTy || qTy.getRank() != 4 || kTy.getRank() != 4 ||
      vTy.getRank() != 4)
    return failure();
  AttentionShape s;
  s.HQ = qTy.getDimSize(2);
  s.H = kTy.getDimSize(2);
  s.Dk = qTy.getDimSize(3);
  s.Dv = vTy.getDimSize(3);
  s.elementType = qTy.getElementType();
  if (ShapedType::isDynamic(s.HQ) || ShapedType::isDynamic(s.H) ||
      ShapedType::isDynamic(s.Dk) || ShapedType::isDynamic(s.Dv) ||
      s.H <= 0 || s.HQ % s.H != 0)
    return failure();
  s.G = s.HQ / s.H;
  return s;
}

Attribute mlir::nsa::getGatherAttr(Operation *op) {
  if (auto iface = dyn_cast_or_null<AttentionOpInterface>(op))
    return iface.getGatherAttribute();
  return {};
}

std::string mlir::nsa::checkTile(const AttentionShape &shape, Attribute gather,
                                 TileAttr tile, bool keyCentric) {
  if (!tile)
    return {};
  int64_t warps = tile.getWarps(), tokens = tile.getTokens(),
          chunk = tile.getKvChunk();
  if (keyCentric) {
    // The dK/dV kernel: each warp owns 16 keys, a step stages tokens * G
    // query rows (an mma K dimension, so a multiple of 16).
    if (warps < 1 || warps > kMaxTileWarps)
      return "tile warps = " + std::to_string(warps) +
             " is out of range; allowed: 1.." + std::to_string(kMaxTileWarps);
    if (chunk != warps * 16)
      return "tile kv_chunk = " + std::to_string(chunk) +
             " must equal warps * 16 = " + std::to_string(warps * 16) +
             " for the bwd_dkdv kernel";
    if (tokens < 1 || (tokens * shape.G) % 16 != 0)
      return "tile tokens * G = " + std::to_string(tokens * shape.G) +
             " is not allowed for the bwd_dkdv kernel; allowed: a positive "
             "multiple of 16";
    if (auto sel = dyn_cast_or_null<SelectedGatherAttr>(gather))
      if (sel.getBlock() % chunk != 0)
        return "gather block l' = " + std::to_string(sel.getBlock()) +
               " is not a multiple of tile kv_chunk = " +
               std::to_string(chunk) + "; allowed: l' % kv_chunk == 0";
    return {};
  }
  if (warps < 1 || warps > kMaxTileWarps)
    return "tile warps = " + std::to_string(warps) +
           " is out of range; allowed: 1.." + std::to_string(kMaxTileWarps);
  if (tokens < 1)
    return "tile tokens = " + std::to_string(tokens) +
           " is out of range; allowed: >= 1";
  if (!contains(kSupportedKvChunks, chunk))
    return "tile kv_chunk = " + std::to_string(chunk) +
           " is not supported; allowed: " + joinInts(kSupportedKvChunks);
  // Each warp owns up to 16 query rows (one mma M tile); a program holds
  // tokens * G query rows.
  if (shape.G > 0 && tokens > (warps * 16) / shape.G)
    return "tile tokens * G = " + std::to_string(tokens) + " * " +
           std::to_string(shape.G) + " = " + std::to_string(tokens * shape.G) +
           " exceeds warps * 16 = " + std::to_string(warps * 16) +
           "; allowed: tokens * G <= warps * 16";
  if (auto sel = dyn_cast_or_null<SelectedGatherAttr>(gather)) {
    // tokens > 1: the CTA walks the union of its tokens' blocks.
    if (tokens > kMaxSelectedTileTokens)
      return "tile tokens = " + std::to_string(tokens) +
             " is out of range for selected attention; allowed: 1.." +
             std::to_string(kMaxSelectedTileTokens);
    if (sel.getBlock() % chunk != 0)
      return "gather block l' = " + std::to_string(sel.getBlock()) +
             " is not a multiple of tile kv_chunk = " + std::to_string(chunk) +
             "; allowed: l' % kv_chunk == 0";
  }
  return {};
}

//===----------------------------------------------------------------------===//
// Builders
//===----------------------------------------------------------------------===//

/// o: [B, T, HQ, Dv] with q's element type; lse: [B, T, HQ] f32.
static std::pair<Type, Type> inferResultTypes(Value q, Value v) {
  auto qTy = cast<RankedTensorType>(q.getType());
  auto vTy = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t, 4> oShape(qTy.getShape());
  if (oShape.size() == 4 && vTy.getRank() == 4)
    oShape[3] = vTy.getDimSize(3);
  SmallVector<int64_t, 3> lseShape(qTy.getShape().take_front(3));
  Type f32 = Float32Type::get(q.getContext());
  return {RankedTensorType::get(oShape, qTy.getElementType()),
          RankedTensorType::get(lseShape, f32)};
}

void CompressedAttentionOp::build(OpBuilder &builder, OperationState &state,
                                  Value q, Value k, Value v,
                                  CompressedGatherAttr gather, FloatAttr scale,
                                  TileAttr tile) {
  auto [oTy, lseTy] = inferResultTypes(q, v);
  build(builder, state, oTy, lseTy, q, k, v, gather, scale, tile);
}

void SelectedAttentionOp::build(OpBuilder &builder, OperationState &state,
                                Value q, Value k, Value v, Value indices,
                                SelectedGatherAttr gather, FloatAttr scale,
                                TileAttr tile) {
  auto [oTy, lseTy] = inferResultTypes(q, v);
  build(builder, state, oTy, lseTy, q, k, v, indices, gather, scale, tile);
}

void WindowAttentionOp::build(OpBuilder &builder, OperationState &state,
                              Value q, Value k, Value v, WindowGatherAttr gather,
                              FloatAttr scale, TileAttr tile) {
  auto [oTy, lseTy] = inferResultTypes(q, v);
  build(builder, state, oTy, lseTy, q, k, v, gather, scale, tile);
}

//===----------------------------------------------------------------------===//
// Verifiers
//===----------------------------------------------------------------------===//

/// Checks operands q, k, v and results o, lse; fills `shape` on success.
static LogicalResult verifyOperandsAndResults(AttentionOpInterface op,
                                              AttentionShape &shape) {
  Operation *o = op.getOperation();
  auto qTy = op.getQ().getType();
  auto kTy = op.getK().getType();
  auto vTy = op.getV().getType();

  struct Named {
    const char *name;
    const char *layout;
    RankedTensorType type;
  };
  for (const Named &n : {Named{"q", "[B, T, HQ, Dk]", qTy},
                         Named{"k", "[B, Tk, H, Dk]", kTy},
                         Named{"v", "[B, Tk, H, Dv]", vTy}}) {
    if (n.type.getRank() != 4)
      return o->emitOpError() << "operand " << n.name
                              << " must be a rank-4 tensor " << n.layout
                              << "; got rank " << n.type.getRank() << " ('"
                              << typeStr(n.type) << "')";
  }

  // Heads and head dims must be static (they select the kernel).
  struct StaticDim {
    const char *what;
    RankedTensorType type;
    unsigned dim;
  };
  for (const StaticDim &d : {StaticDim{"q heads HQ", qTy, 2},
                             StaticDim{"q head dim Dk", qTy, 3},
                             StaticDim{"k heads H", kTy, 2},
                             StaticDim{"k head dim Dk", kTy, 3},
                             StaticDim{"v heads H", vTy, 2},
                             StaticDim{"v head dim Dv", vTy, 3}}) {
    if (d.type.isDynamicDim(d.dim))
      return o->emitOpError()
             << d.what << " is dynamic ('" << typeStr(d.type)
             << "'); allowed: a static size (only B and T may be dynamic)";
  }

  // Element types.
  Type et = qTy.getElementType();
  if (kTy.getElementType() != et || vTy.getElementType() != et)
    return o->emitOpError()
           << "element types of q, k, v must be identical; got "
           << typeStr(et) << ", " << typeStr(kTy.getElementType()) << ", "
           << typeStr(vTy.getElementType());
  if (!isSupportedElementType(et))
    return o->emitOpError() << "element type " << typeStr(et)
                            << " is not supported; allowed: bf16, f16";

  // Heads and GQA group.
  int64_t hq = qTy.getDimSize(2), hk = kTy.getDimSize(2),
          hv = vTy.getDimSize(2);
  if (hk != hv)
    return o->emitOpError() << "k heads H = " << hk << " and v heads H = " << hv
                            << " differ; they must be equal";
  if (hk <= 0 || hq <= 0 || hq % hk != 0)
    return o->emitOpError() << "q heads HQ = " << hq
                            << " is not a multiple of kv heads H = " << hk
                            << "; allowed: HQ = G * H with G in "
                            << joinInts(kSupportedGroupSizes);
  int64_t g = hq / hk;
  if (!contains(kSupportedGroupSizes, g))
    return o->emitOpError() << "GQA group G = HQ / H = " << hq << " / " << hk
                            << " = " << g << " is not supported; allowed: "
                            << joinInts(kSupportedGroupSizes);

  // Head dims.
  int64_t dk = qTy.getDimSize(3), dkk = kTy.getDimSize(3),
          dv = vTy.getDimSize(3);
  if (dk != dkk)
    return o->emitOpError() << "q head dim Dk = " << dk
                            << " and k head dim Dk = " << dkk
                            << " differ; they must be equal";
  if (!contains(kSupportedHeadDims, dk))
    return o->emitOpError() << "head dim Dk = " << dk
                            << " is not supported; allowed: "
                            << joinInts(kSupportedHeadDims);
  if (!contains(kSupportedHeadDims, dv))
    return o->emitOpError() << "value head dim Dv = " << dv
                            << " is not supported; allowed: "
                            << joinInts(kSupportedHeadDims);
  if (dv > dk)
    return o->emitOpError() << "value head dim Dv = " << dv
                            << " exceeds Dk = " << dk
                            << "; allowed: Dv <= Dk";

  // Batch and sequence dims (where static). k/v may have another length
  // than q (compressed tokens Tc; a KV cache while decoding).
  int64_t b = qTy.getDimSize(0), t = qTy.getDimSize(1);
  if (!compatible(b, kTy.getDimSize(0)) || !compatible(b, vTy.getDimSize(0)) ||
      !compatible(kTy.getDimSize(0), vTy.getDimSize(0)))
    return o->emitOpError()
           << "batch B differs between q, k, v (" << dimStr(b) << ", "
           << dimStr(kTy.getDimSize(0)) << ", " << dimStr(vTy.getDimSize(0))
           << "); allowed: equal (or dynamic)";
  // The batch as far as known from any operand, for the results.
  for (RankedTensorType ty : {kTy, vTy})
    if (ShapedType::isDynamic(b))
      b = ty.getDimSize(0);
  if (!compatible(kTy.getDimSize(1), vTy.getDimSize(1)))
    return o->emitOpError() << "key length Tk differs between k ("
                            << dimStr(kTy.getDimSize(1)) << ") and v ("
                            << dimStr(vTy.getDimSize(1))
                            << "); allowed: equal (or dynamic)";

  // Results.
  auto oTy = op.getO().getType();
  SmallVector<int64_t> oWant = {b, t, hq, dv};
  auto oMatches = [&] {
    if (oTy.getRank() != 4 || oTy.getElementType() != et)
      return false;
    return compatible(oTy.getDimSize(0), b) &&
           compatible(oTy.getDimSize(1), t) && oTy.getDimSize(2) == hq &&
           oTy.getDimSize(3) == dv;
  };
  if (!oMatches())
    return o->emitOpError() << "result o must be [B, T, HQ, Dv] = "
                            << shapeStr(oWant) << " of " << typeStr(et)
                            << "; got '" << typeStr(oTy) << "'";
  auto lseTy = op.getLse().getType();
  SmallVector<int64_t> lseWant = {b, t, hq};
  auto lseMatches = [&] {
    if (lseTy.getRank() != 3 || !lseTy.getElementType().isF32())
      return false;
    return compatible(lseTy.getDimSize(0), b) &&
           compatible(lseTy.getDimSize(1), t) && lseTy.getDimSize(2) == hq;
  };
  if (!lseMatches())
    return o->emitOpError() << "result lse must be [B, T, HQ] = "
                            << shapeStr(lseWant) << " of f32; got '"
                            << typeStr(lseTy) << "'";

  shape.HQ = hq;
  shape.H = hk;
  shape.G = g;
  shape.Dk = dk;
  shape.Dv = dv;
  shape.elementType = et;
  return success();
}

/// The checks shared by all three ops, after the gather-specific ones.
static LogicalResult verifyScaleAndTile(AttentionOpInterface op,
                                        const AttentionShape &shape) {
  Operation *o = op.getOperation();
  if (FloatAttr scale = op.getScaleAttribute()) {
    const APFloat &v = scale.getValue();
    if (!v.isFiniteNonZero() || v.isNegative())
      return o->emitOpError() << "scale = " << floatStr(v)
                              << " is not allowed; allowed: finite and > 0 "
                                 "(omit it for 1/sqrt(Dk))";
  }
  // Which of the branch's kernels the op stands for (nsajit's compiler sets
  // it; absent means the forward).
  bool keyCentric = false;
  Attribute gather = op.getGatherAttribute();
  if (Attribute k = o->getAttr(kKernelAttrName)) {
    auto name = dyn_cast<StringAttr>(k);
    if (!name || !llvm::is_contained(kKernelNames, name.getValue()))
      return o->emitOpError()
             << kKernelAttrName
             << " is not allowed; allowed: \"fwd\", \"bwd_pre\", "
                "\"bwd_dq\", \"bwd_dkdv\", \"topn\", \"pool\", \"pool_bwd\", "
                "\"pool_dw\", \"combine\"";
    if (name.getValue().starts_with("pool") && !isa<CompressedGatherAttr>(gather))
      return o->emitOpError() << "nsa.kernel = \"" << name.getValue()
                              << "\" is a kernel of the compressed branch; "
                                 "allowed on nsa.compressed_attention only";
    if (name.getValue() == "pool_dw" && !o->hasAttr(kWeightedAttrName))
      return o->emitOpError() << "nsa.kernel = \"pool_dw\" (the pooling "
                                 "weight gradient) needs " << kWeightedAttrName;
    if (name.getValue() == "topn") {
      if (!isa<CompressedGatherAttr>(gather))
        return o->emitOpError()
               << "nsa.kernel = \"topn\" is a kernel of the compressed "
                  "branch; allowed on nsa.compressed_attention only";
      auto sel = o->getAttrOfType<SelectedGatherAttr>(kSelectAttrName);
      if (!sel)
        return o->emitOpError()
               << "nsa.kernel = \"topn\" needs " << kSelectAttrName
               << " = #nsa.selected<block = l', count = n>";
      auto forced = o->getAttrOfType<DenseI64ArrayAttr>(kForcedAttrName);
      if (o->hasAttr(kForcedAttrName) &&
          (!forced || forced.size() != 2 || forced[0] < 0 || forced[1] < 0 ||
           forced[0] + forced[1] > sel.getCount()))
        return o->emitOpError()
               << kForcedAttrName
               << " must be array<i64: initial, local> with initial, local "
                  ">= 0 and initial + local <= n";
    }
    keyCentric = name.getValue() == "bwd_dkdv";
    // bwd_pre works per query row and gathers nothing: any query-row tile.
    if (name.getValue() == "bwd_pre")
      gather = Attribute();
  }
  std::string msg =
      checkTile(shape, gather, op.getTileAttribute(), keyCentric);
  if (!msg.empty())
    return o->emitOpError() << msg;
  return success();
}

LogicalResult CompressedAttentionOp::verify() {
  auto iface = cast<AttentionOpInterface>(getOperation());
  AttentionShape shape;
  if (failed(verifyOperandsAndResults(iface, shape)))
    return failure();
  int64_t l = getGather().getBlock(), d = getGather().getStride();
  if (l < 1 || l > kMaxCompressedBlock)
    return emitOpError() << "gather block l = " << l
                         << " is out of range; allowed: 1 <= l <= "
                         << kMaxCompressedBlock;
  if (d < 1 || d > l)
    return emitOpError() << "gather stride d = " << d
                         << " is out of range; allowed: 1 <= d <= l (= " << l
                         << ")";
  if (l % d != 0)
    return emitOpError() << "gather block l = " << l
                         << " is not a multiple of stride d = " << d
                         << "; allowed: l % d == 0";
  return verifyScaleAndTile(iface, shape);
}

LogicalResult SelectedAttentionOp::verify() {
  auto iface = cast<AttentionOpInterface>(getOperation());
  AttentionShape shape;
  if (failed(verifyOperandsAndResults(iface, shape)))
    return failure();
  int64_t l = getGather().getBlock(), n = getGather().getCount();
  if (!contains(kSupportedSelectedBlocks, l))
    return emitOpError() << "gather block l' = " << l
                         << " is not supported; allowed: "
                         << joinInts(kSupportedSelectedBlocks);
  if (n < 1 || n > kMaxSelectedCount)
    return emitOpError() << "gather count n = " << n
                         << " is out of range; allowed: 1 <= n <= "
                         << kMaxSelectedCount;

  auto idxTy = getIndices().getType();
  if (idxTy.getRank() != 4 || !idxTy.getElementType().isSignlessInteger(32))
    return emitOpError() << "operand indices must be a rank-4 i32 tensor "
                            "[B, T, H, n]; got '"
                         << typeStr(idxTy) << "'";
  auto qTy = getQ().getType();
  if (!compatible(idxTy.getDimSize(0), qTy.getDimSize(0)) ||
      !compatible(idxTy.getDimSize(1), qTy.getDimSize(1)))
    return emitOpError() << "indices [B, T] = ["
                         << dimStr(idxTy.getDimSize(0)) << ", "
                         << dimStr(idxTy.getDimSize(1))
                         << "] does not match q [B, T] = ["
                         << dimStr(qTy.getDimSize(0)) << ", "
                         << dimStr(qTy.getDimSize(1)) << "]";
  if (!compatible(idxTy.getDimSize(2), shape.H))
    return emitOpError() << "indices heads = " << dimStr(idxTy.getDimSize(2))
                         << " does not match kv heads H = " << shape.H
                         << "; allowed: " << shape.H;
  if (!idxTy.isDynamicDim(3) && idxTy.getDimSize(3) != n)
    return emitOpError() << "indices last dim = " << idxTy.getDimSize(3)
                         << " does not match gather count n = " << n
                         << "; allowed: " << n;
  return verifyScaleAndTile(iface, shape);
}

LogicalResult WindowAttentionOp::verify() {
  auto iface = cast<AttentionOpInterface>(getOperation());
  AttentionShape shape;
  if (failed(verifyOperandsAndResults(iface, shape)))
    return failure();
  int64_t w = getGather().getSize();
  if (w < 1 || w > kMaxWindowSize)
    return emitOpError() << "gather window size w = " << w
                         << " is out of range; allowed: 1 <= w <= "
                         << kMaxWindowSize;
  return verifyScaleAndTile(iface, shape);
}
