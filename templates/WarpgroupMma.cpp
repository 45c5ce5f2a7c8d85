#include "WarpgroupMma.h"

#include "fmt/format.h"

using namespace mlir;

namespace nsajit::tpl {

Value WarpgroupMma::descriptor(Value smem, Value byteOffset, int leadingBytes, int strideBytes) {
  Value base = LLVM::PtrToIntOp::create(h.b, h.loc, h.i64(), smem);
  Value addr = h.add(base, h.ext64(byteOffset));
  auto field = [&](Value bytes, int shift) {
    Value v = arith::AndIOp::create(h.b, h.loc, arith::ShRUIOp::create(h.b, h.loc, bytes, h.c64(4)), h.c64(0x3FFF));
    return h.shl(v, h.c64(shift));
  };
  // Bits 0-13: address >> 4; 16-29: leading offset >> 4; 32-45: stride offset >> 4;
  // 49-51 base offset 0 (atoms 1024-byte aligned) and 62-63 swizzle 1 (128 bytes).
  Value fields = h.bor(field(addr, 0), h.bor(field(h.c64(leadingBytes), 16), field(h.c64(strideBytes), 32)));
  return h.bor(fields, h.c64(int64_t(1) << 62));
}

Value WarpgroupMma::advance(Value desc, int bytes) { return h.add(desc, h.c64(bytes >> 4)); }

std::vector<Value> WarpgroupMma::passThrough(StringRef asmText, ArrayRef<Value> regs, ArrayRef<Value> extra,
                                             ArrayRef<std::string> extraConstraints) {
  SmallVector<Type> types;
  std::string outs, ins;
  for (size_t i = 0; i < regs.size(); ++i) {
    bool isFloat = regs[i].getType().isF32();
    types.push_back(regs[i].getType());
    outs += fmt::format("{}={}", i ? "," : "", isFloat ? "f" : "r");
    ins += fmt::format(",{}", i);
  }
  for (auto &c : extraConstraints) ins += "," + c;
  SmallVector<Value> operands(regs.begin(), regs.end());
  operands.append(extra.begin(), extra.end());
  std::vector<Value> out;
  if (regs.empty()) {
    h.inlineAsm({}, operands, asmText, ins.empty() ? "" : ins.substr(1));
    return out;
  }
  auto structTy = LLVM::LLVMStructType::getLiteral(h.b.getContext(), types);
  auto op = h.inlineAsm(structTy, operands, asmText, outs + ins);
  for (size_t i = 0; i < regs.size(); ++i)
    out.push_back(LLVM::ExtractValueOp::create(h.b, h.loc, op.getResult(0), ArrayRef<int64_t>{int64_t(i)}));
  return out;
}

std::vector<Value> WarpgroupMma::fence(ArrayRef<Value> regs) {
  return passThrough("wgmma.fence.sync.aligned;", regs, {}, {});
}

std::vector<Value> WarpgroupMma::mma(ArrayRef<Value> acc, const Frag4 &a, Value descB, bool transposeB) {
  const int n = static_cast<int>(acc.size()) * 2; // N columns: 4 values per 8 columns
  const int nAcc = static_cast<int>(acc.size());
  std::string d, list;
  for (int i = 0; i < nAcc; ++i) d += fmt::format("{}${}", i ? ", " : "", i);
  const char *type = dtype == DType::BF16 ? "bf16" : "f16";
  const int x = 2 * nAcc; // the extra inputs follow the outputs and their tied inputs
  // scale-d is a predicate operand: always accumulate (callers start from zeros).
  std::string text = fmt::format("{{\n.reg .pred p;\nsetp.ne.b32 p, ${}, 0;\n"
                                 "wgmma.mma_async.sync.aligned.m64n{}k16.f32.{}.{} {{{}}}, {{${}, ${}, ${}, ${}}}, "
                                 "${}, p, 1, 1, {};\n}}",
                                 x + 5, n, type, type, d, x, x + 1, x + 2, x + 3, x + 4,
                                 transposeB ? 1 : 0);
  return passThrough(text, acc, {a[0], a[1], a[2], a[3], descB, h.c32(1)}, {"r", "r", "r", "r", "l", "r"});
}

std::vector<Value> WarpgroupMma::mmaShared(ArrayRef<Value> acc, Value descA, Value descB) {
  const int nAcc = static_cast<int>(acc.size());
  std::string d;
  for (int i = 0; i < nAcc; ++i) d += fmt::format("{}${}", i ? ", " : "", i);
  const char *type = dtype == DType::BF16 ? "bf16" : "f16";
  const int x = 2 * nAcc;
  std::string text = fmt::format("{{\n.reg .pred p;\nsetp.ne.b32 p, ${}, 0;\n"
                                 "wgmma.mma_async.sync.aligned.m64n{}k16.f32.{}.{} {{{}}}, ${}, ${}, p, 1, 1, 0, 0;\n}}",
                                 x + 2, 2 * nAcc, type, type, d, x, x + 1);
  return passThrough(text, acc, {descA, descB, h.c32(1)}, {"l", "l", "r"});
}

std::vector<Value> WarpgroupMma::commitAndWait(ArrayRef<Value> acc) {
  return passThrough("wgmma.commit_group.sync.aligned;\nwgmma.wait_group.sync.aligned 0;", acc, {}, {});
}

std::vector<Value> WarpgroupMma::flatten(const std::vector<Frag4> &tiles) {
  std::vector<Value> flat;
  for (auto &t : tiles) flat.insert(flat.end(), t.begin(), t.end());
  return flat;
}

std::vector<Frag4> WarpgroupMma::tiles(ArrayRef<Value> flat) {
  std::vector<Frag4> t(flat.size() / 4);
  for (size_t i = 0; i < flat.size(); ++i) t[i / 4][i % 4] = flat[i];
  return t;
}

void fenceAsyncProxy(IRBuilderHelpers &h) { h.inlineAsm({}, {}, "fence.proxy.async.shared::cta;", ""); }

} // namespace nsajit::tpl
