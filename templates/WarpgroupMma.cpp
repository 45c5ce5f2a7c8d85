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

std::vector<Value> WarpgroupMma::issue(ArrayRef<Value> acc, ArrayRef<Value> sources,
                                       ArrayRef<std::string> sourceConstraints, StringRef tail) {
  // Operands: the accumulators ($0.., tied inputs after them), then the sources
  // (4 A registers and the B descriptor, or the A and B descriptors) and the
  // constant 1 that sets scale-d (a predicate: always accumulate, the callers
  // start from zeros).
  const int nAcc = static_cast<int>(acc.size());
  const int first = 2 * nAcc, scale = first + static_cast<int>(sources.size());
  const bool aInRegisters = sources.size() == 5;
  std::string d, src;
  for (int i = 0; i < nAcc; ++i) d += fmt::format("{}${}", i ? ", " : "", i);
  if (aInRegisters)
    src = fmt::format("{{${}, ${}, ${}, ${}}}, ${}, ", first, first + 1, first + 2, first + 3, first + 4);
  else
    src = fmt::format("${}, ${}, ", first, first + 1);
  const char *type = dtype == DType::BF16 ? "bf16" : "f16";
  // N = 2 * nAcc columns (4 values per 8 columns); `tail` closes the operand list.
  std::string text = fmt::format("{{\n.reg .pred p;\nsetp.ne.b32 p, ${}, 0;\n"
                                 "wgmma.mma_async.sync.aligned.m64n{}k16.f32.{}.{} {{{}}}, {}p, 1, 1{};\n}}",
                                 scale, 2 * nAcc, type, type, d, src, tail);
  SmallVector<Value> extra(sources.begin(), sources.end());
  extra.push_back(h.c32(1));
  SmallVector<std::string> constraints(sourceConstraints.begin(), sourceConstraints.end());
  constraints.push_back("r");
  return passThrough(text, acc, extra, constraints);
}

std::vector<Value> WarpgroupMma::mma(ArrayRef<Value> acc, const Frag4 &a, Value descB, bool transposeB) {
  return issue(acc, {a[0], a[1], a[2], a[3], descB}, {"r", "r", "r", "r", "l"}, transposeB ? ", 1" : ", 0");
}

std::vector<Value> WarpgroupMma::mmaShared(ArrayRef<Value> acc, Value descA, Value descB) {
  return issue(acc, {descA, descB}, {"l", "l"}, ", 0, 0");
}

std::vector<Value> WarpgroupMma::issueProductABt(ArrayRef<Value> acc, Value smem, const SwizzledTile &a, Value aRow,
                                                 const SwizzledTile &b, int depth) {
  // k-step kk reads 32 bytes at (kk % 4) * 32 of each row of panel kk / 4.
  Value descA = descriptor(smem, h.add(a.byteOffset, h.mul(aRow, h.c32(128))), /*leadingBytes=*/16, /*strideBytes=*/1024);
  Value descB = descriptor(smem, b.byteOffset, /*leadingBytes=*/16, /*strideBytes=*/1024);
  std::vector<Value> out(acc.begin(), acc.end());
  for (int kk = 0; kk < depth / 16; ++kk) {
    const int panel = kk / 4, inRow = (kk % 4) * 32;
    out = mmaShared(out, advance(descA, panel * a.rows * 128 + inRow), advance(descB, panel * b.rows * 128 + inRow));
  }
  return out;
}

std::vector<Value> WarpgroupMma::issueProductARegsBt(ArrayRef<Value> acc, ArrayRef<Frag4> a, Value smem,
                                                     const SwizzledTile &b) {
  // k-step kk reads 32 bytes at (kk % 4) * 32 of each row of panel kk / 4 of B.
  Value descB = descriptor(smem, b.byteOffset, /*leadingBytes=*/16, /*strideBytes=*/1024);
  std::vector<Value> out(acc.begin(), acc.end());
  for (size_t kk = 0; kk < a.size(); ++kk) {
    const int panel = static_cast<int>(kk) / 4, inRow = (static_cast<int>(kk) % 4) * 32;
    out = mma(out, a[kk], advance(descB, panel * b.rows * 128 + inRow), /*transposeB=*/false);
  }
  return out;
}

std::vector<Value> WarpgroupMma::issueProductAB(ArrayRef<Value> acc, ArrayRef<Frag4> a, Value smem,
                                                const SwizzledTile &b) {
  // B N-major (its rows are K, transposed by wgmma): 64-column panels b.rows *
  // 128 bytes apart, 8-row atoms 1024; k-step kk starts at row 16 kk.
  Value desc = descriptor(smem, b.byteOffset, /*leadingBytes=*/b.rows * 128, /*strideBytes=*/1024);
  std::vector<Value> out(acc.begin(), acc.end());
  for (size_t kk = 0; kk < a.size(); ++kk)
    out = mma(out, a[kk], advance(desc, 16 * 128 * static_cast<int>(kk)), /*transposeB=*/true);
  return out;
}

std::vector<Value> WarpgroupMma::commitAndWait(ArrayRef<Value> acc) {
  return passThrough("wgmma.commit_group.sync.aligned;\nwgmma.wait_group.sync.aligned 0;", acc, {}, {});
}

std::vector<Value> WarpgroupMma::commit(ArrayRef<Value> acc) {
  return passThrough("wgmma.commit_group.sync.aligned;", acc, {}, {});
}

std::vector<Value> WarpgroupMma::wait(ArrayRef<Value> acc, int pending) {
  return passThrough(fmt::format("wgmma.wait_group.sync.aligned {};", pending), acc, {}, {});
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
