#include "TopNSelection.h"

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"
#include "WarpMma.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>
#include <vector>

using namespace mlir;

namespace nsajit::tpl {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
// Scores are probabilities (>= 0) or +inf for forced blocks; empty slots of
// the running list hold kEmpty, candidates already taken kTaken.
constexpr float kEmpty = -1.0f;
constexpr float kTaken = -2.0f;

class TopNKernelBuilder {
public:
  TopNKernelBuilder(OpBuilder &b, Location loc, const KernelSpec &spec, StringRef name)
      : name(name.str()), h(b, loc), mma(h, spec.dtype), spec(spec), Dk(spec.headDimQK), G(spec.group),
        W(spec.tile.warps), C(spec.tile.kvChunk), N(spec.slcCount), win(topNWindow(spec)) {}

  LogicalResult build();

private:
  Value offset(Value base[3], Value bIdx, Value row, Value head) {
    return h.add(h.add(h.mul(h.ext64(bIdx), base[0]), h.mul(h.ext64(row), base[1])), h.mul(h.ext64(head), base[2]));
  }
  Value at(int byteOff, Type t, Value i) { return h.gep(h.gep(smem, h.b.getI8Type(), h.c32(byteOff)), t, i); }
  Value ldF(int off, Value i) { return h.load(h.f32(), at(off, h.f32(), i), 4); }
  Value ldI(int off, Value i) { return h.load(h.i32(), at(off, h.i32(), i), 4); }
  void stF(int off, Value i, Value v) { h.store(v, at(off, h.f32(), i), 4); }
  void stI(int off, Value i, Value v) { h.store(v, at(off, h.i32(), i), 4); }
  // (score, index) a is better than b: higher score, then lower index.
  Value better(Value sa, Value ia, Value sb, Value ib) {
    return h.bor(h.fgt(sa, sb), h.band(h.feq(sa, sb), h.lt(ia, ib)));
  }
  void scoreWindow(Value J0, Value nBlocks, Value nvis, Value jt);
  void mergeWindow(Value J0, Value nBlocks);
  void forThreads(Value count, const std::function<void(Value)> &body) {
    scf::ForOp::create(h.b, h.loc, ids.tid, count, h.c32(W * 32), ValueRange{},
                       [&](OpBuilder &, Location, Value i, ValueRange) {
                         body(i);
                         scf::YieldOp::create(h.b, h.loc);
                       });
  }

  std::string name;
  IRBuilderHelpers h;
  WarpMma mma;
  const KernelSpec &spec;
  const int Dk, G, W, C, N;
  TopNWindow win;
  int qBase = 0, kBase = 0, cmpOff = 0, blkOff = 0, topSOff = 0, topIOff = 0, newSOff = 0, newIOff = 0, redOff = 0;
  ThreadIds ids;
  Value smem, batch, kvHead, tok, seqLen, kvLen, lse2[2];
  Value qPtr, kcPtr, lsePtr, idxPtr;
  Value qS[3], kcS[3], lseS[3], idxS[3];
};

// Phase A and B of a window: compressed-token scores summed over the group,
// then the window's selection-block scores (eq. 9) with forced blocks at +inf.
void TopNKernelBuilder::scoreWindow(Value J0, Value nBlocks, Value nvis, Value jt) {
  const int a = spec.slcBlock / spec.cmpStride, bb = spec.cmpBlock / spec.cmpStride;
  Value zero = h.cf(0.0f);
  Value iBase = h.sub(h.mul(J0, h.c32(a)), h.c32(win.reach));
  Value iCount = h.add(h.mul(h.sub(nBlocks, h.c32(1)), h.c32(a)), h.c32(win.reach + 1));
  forThreads(iCount, [&](Value x) { stF(cmpOff, x, zero); });
  Value iLo = h.maxs(iBase, h.c32(0));
  Value iHi = h.mins(h.add(iBase, iCount), nvis);
  Value chunks = h.select(h.gt(iHi, iLo), h.ceilDiv(h.sub(iHi, iLo), h.c32(C)), h.c32(0));
  const int kPitch = Dk + 8, qPitch = Dk + 8;
  scf::ForOp::create(h.b, h.loc, h.c32(0), chunks, h.c32(1), ValueRange{}, [&](OpBuilder &, Location, Value c,
                                                                              ValueRange) {
    Value keyStart = h.add(iLo, h.mul(c, h.c32(C)));
    h.barrier();
    stageRows(h, ids, W * 32, smem, h.c32(kBase), kPitch, C, Dk, kcPtr, [&](Value row) -> std::pair<Value, Value> {
      Value key = h.add(keyStart, row);
      return {offset(kcS, batch, key, kvHead), h.lt(key, iHi)};
    });
    h.barrier();
    std::vector<Frag4> s(C / 8, Frag4{zero, zero, zero, zero});
    // Fragments by ldmatrix.x4 (as in the forward kernel): lane l addresses row l % 8
    // of matrix l / 8; Q matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15), K matrices
    // (dims 0-7 | 8-15) of keys 0-7, then of keys 8-15.
    Value matRow = h.rems(ids.lane, h.c32(8)), mat = h.divs(ids.lane, h.c32(8));
    Value matLo = h.rems(mat, h.c32(2)), matHi = h.divs(mat, h.c32(2));
    Value qA = h.add(h.c32(qBase),
                     h.add(h.mul(h.add(h.mul(ids.warp, h.c32(16)), h.add(h.mul(matLo, h.c32(8)), matRow)), h.c32(qPitch)),
                           h.mul(matHi, h.c32(8))));
    Value kRow = h.add(h.c32(kBase), h.add(h.mul(h.add(h.mul(matHi, h.c32(8)), matRow), h.c32(kPitch)),
                                           h.mul(matLo, h.c32(8))));
    for (int kk = 0; kk < Dk / 16; ++kk) {
      Frag4 af = mma.loadMatrices(smem, h.add(qA, h.c32(16 * kk)), /*trans=*/false);
      for (int n = 0; n < C / 8; n += 2) {
        Frag4 b = mma.loadMatrices(smem, h.add(kRow, h.c32(n * 8 * kPitch + 16 * kk)), /*trans=*/false);
        s[n] = mma.mma(af, Frag2{b[0], b[1]}, s[n]);
        s[n + 1] = mma.mma(af, Frag2{b[2], b[3]}, s[n + 1]);
      }
    }
    // p = 2^(s scale log2e - lse2) per (head row, key); sum over the rows.
    const float scaleLog2 = spec.effectiveScale() * kLog2e;
    std::vector<Value> colSum;
    for (int n = 0; n < C / 8; ++n)
      for (int col = 0; col < 2; ++col) {
        Value key = h.add(keyStart, h.add(h.c32(8 * n + col), h.mul(ids.tig, h.c32(2))));
        Value sum = zero;
        for (int r = 0; r < 2; ++r) {
          Value pr = h.exp2(h.fsub(h.fmul(s[n][2 * r + col], h.cf(scaleLog2)), lse2[r]));
          sum = h.fadd(sum, h.select(h.lt(key, iHi), pr, zero));
        }
        for (int mask : {4, 8, 16}) sum = h.fadd(sum, h.shflXor(sum, mask));
        colSum.push_back(sum);
      }
    // Warps add their partial sums in warp order: deterministic.
    for (int w = 0; w < W; ++w) {
      h.barrier();
      Value mine = h.band(h.eq(ids.warp, h.c32(w)), h.lt(ids.lane, h.c32(4)));
      scf::IfOp::create(h.b, h.loc, mine, [&](OpBuilder &, Location) {
        for (int n = 0; n < C / 8; ++n)
          for (int col = 0; col < 2; ++col) {
            Value key = h.add(keyStart, h.add(h.c32(8 * n + col), h.mul(ids.tig, h.c32(2))));
            scf::IfOp::create(h.b, h.loc, h.lt(key, iHi), [&](OpBuilder &, Location) {
              Value x = h.sub(key, iBase);
              stF(cmpOff, x, h.fadd(ldF(cmpOff, x), colSum[2 * n + col]));
              scf::YieldOp::create(h.b, h.loc);
            });
          }
        scf::YieldOp::create(h.b, h.loc);
      });
    }
    scf::YieldOp::create(h.b, h.loc);
  });
  h.barrier();

  // Block j sums compressed tokens a*j - s, s = 0..reach, weighted by the
  // number of (m, n) in [0, a) x [0, b) with m + n = s (eq. 9).
  forThreads(nBlocks, [&](Value jj) {
    Value j = h.add(J0, jj);
    Value first = h.add(h.mul(jj, h.c32(a)), h.c32(win.reach)); // index of token a*j in the window
    auto loop = scf::ForOp::create(
        h.b, h.loc, h.c32(0), h.c32(win.reach + 1), h.c32(1), ValueRange{zero},
        [&](OpBuilder &, Location, Value s, ValueRange acc) {
          Value w = h.add(h.sub(h.mins(s, h.c32(a - 1)), h.maxs(h.c32(0), h.sub(s, h.c32(bb - 1)))), h.c32(1));
          Value wf = arith::SIToFPOp::create(h.b, h.loc, h.f32(), w);
          Value term = h.fmul(wf, ldF(cmpOff, h.sub(first, s)));
          scf::YieldOp::create(h.b, h.loc, ValueRange{h.fadd(acc[0], term)});
        });
    Value forced = h.bor(h.lt(j, h.c32(spec.slcInitial)), h.gt(j, h.sub(jt, h.c32(spec.slcLocal))));
    stF(blkOff, jj, h.select(forced, h.cf(std::numeric_limits<float>::infinity()), loop.getResult(0)));
  });
  h.barrier();
}

// Phase C: the n best of (running list) U (window blocks), by n rounds of a
// CTA-wide argmax; the taken candidate is marked so the next round skips it.
void TopNKernelBuilder::mergeWindow(Value J0, Value nBlocks) {
  Value total = h.add(h.c32(N), nBlocks);
  Value negInf = h.cf(-std::numeric_limits<float>::infinity());
  scf::ForOp::create(h.b, h.loc, h.c32(0), h.c32(N), h.c32(1), ValueRange{}, [&](OpBuilder &, Location, Value k,
                                                                                ValueRange) {
    // Each thread's best candidate.
    auto scan = scf::ForOp::create(
        h.b, h.loc, ids.tid, total, h.c32(W * 32), ValueRange{negInf, h.c32(std::numeric_limits<int>::max()), h.c32(-1)},
        [&](OpBuilder &, Location, Value x, ValueRange best) {
          Value inTop = h.lt(x, h.c32(N));
          Value xb = h.select(inTop, h.c32(0), h.sub(x, h.c32(N)));
          Value xt = h.select(inTop, x, h.c32(0));
          Value sc = h.select(inTop, ldF(topSOff, xt), ldF(blkOff, xb));
          Value ix = h.select(inTop, ldI(topIOff, xt), h.add(J0, xb));
          // Empty slots rank below every block, by their (lowest) index -1 too.
          Value live = h.fgt(sc, h.cf(kTaken));
          Value take = h.band(live, better(sc, ix, best[0], best[1]));
          scf::YieldOp::create(h.b, h.loc,
                               ValueRange{h.select(take, sc, best[0]), h.select(take, ix, best[1]),
                                          h.select(take, x, best[2])});
        });
    Value bs = scan.getResult(0), bi = scan.getResult(1), bx = scan.getResult(2);
    for (int mask : {16, 8, 4, 2, 1}) {
      Value os = h.shflXor(bs, mask), oi = h.shflXor(bi, mask), ox = h.shflXor(bx, mask);
      Value take = better(os, oi, bs, bi);
      bs = h.select(take, os, bs), bi = h.select(take, oi, bi), bx = h.select(take, ox, bx);
    }
    scf::IfOp::create(h.b, h.loc, h.eq(ids.lane, h.c32(0)), [&](OpBuilder &, Location) {
      stF(redOff, h.mul(ids.warp, h.c32(3)), bs);
      stI(redOff, h.add(h.mul(ids.warp, h.c32(3)), h.c32(1)), bi);
      stI(redOff, h.add(h.mul(ids.warp, h.c32(3)), h.c32(2)), bx);
      scf::YieldOp::create(h.b, h.loc);
    });
    h.barrier();
    scf::IfOp::create(h.b, h.loc, h.eq(ids.tid, h.c32(0)), [&](OpBuilder &, Location) {
      Value s0 = ldF(redOff, h.c32(0)), i0 = ldI(redOff, h.c32(1)), x0 = ldI(redOff, h.c32(2));
      for (int w = 1; w < W; ++w) {
        Value sw = ldF(redOff, h.c32(3 * w)), iw = ldI(redOff, h.c32(3 * w + 1)), xw = ldI(redOff, h.c32(3 * w + 2));
        Value take = better(sw, iw, s0, i0);
        s0 = h.select(take, sw, s0), i0 = h.select(take, iw, i0), x0 = h.select(take, xw, x0);
      }
      stF(newSOff, k, s0);
      stI(newIOff, k, i0);
      Value inTop = h.lt(x0, h.c32(N));
      scf::IfOp::create(
          h.b, h.loc, inTop,
          [&](OpBuilder &, Location) {
            stF(topSOff, x0, h.cf(kTaken));
            scf::YieldOp::create(h.b, h.loc);
          },
          [&](OpBuilder &, Location) {
            stF(blkOff, h.sub(x0, h.c32(N)), h.cf(kTaken));
            scf::YieldOp::create(h.b, h.loc);
          });
      scf::YieldOp::create(h.b, h.loc);
    });
    h.barrier();
    scf::YieldOp::create(h.b, h.loc);
  });
  forThreads(h.c32(N), [&](Value k) {
    stF(topSOff, k, ldF(newSOff, k));
    stI(topIOff, k, ldI(newIOff, k));
  });
  h.barrier();
}

LogicalResult TopNKernelBuilder::build() {
  OpBuilder &b = h.b;
  Operation *gpuModule = b.getInsertionBlock()->getParentOp();
  if (!isa<gpu::GPUModuleOp>(gpuModule))
    return emitError(h.loc, "buildTopNKernel must be called inside a gpu.module");
  if (W * 16 < G || C % 16 != 0)
    return emitError(h.loc, "inconsistent top-n tile: ") << spec.str();
  declareSharedMemory(h, gpuModule);
  const int row = (Dk + 8) * 2;
  qBase = 0;
  kBase = W * 16 * (Dk + 8);
  cmpOff = W * 16 * row + C * row;
  blkOff = cmpOff + 4 * win.cmpCapacity;
  topSOff = blkOff + 4 * win.blocks;
  topIOff = topSOff + 4 * N;
  newSOff = topIOff + 4 * N;
  newIOff = newSOff + 4 * N;
  redOff = newIOff + 4 * N;

  Block &entry = *createKernelFunction(h, name, 4, 12, 2, W * 32);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&entry);
  auto args = entry.getArguments();
  qPtr = args[0], kcPtr = args[1], lsePtr = args[2], idxPtr = args[3];
  Value *strideSets[4] = {qS, kcS, lseS, idxS};
  for (int t = 0; t < 4; ++t)
    for (int d = 0; d < 3; ++d) strideSets[t][d] = args[4 + 3 * t + d];
  seqLen = args[16], kvLen = args[17];

  ids = ThreadIds::read(h);
  tok = h.blockIdX();
  kvHead = h.blockIdY();
  batch = h.blockIdZ();
  smem = sharedMemoryBase(h, gpuModule);

  // Query rows: the G heads of this token (rows >= G are zeros).
  auto headOf = [&](Value r) { return h.add(h.mul(kvHead, h.c32(G)), r); };
  stageRows(h, ids, W * 32, smem, h.c32(qBase), Dk + 8, W * 16, Dk, qPtr, [&](Value r) -> std::pair<Value, Value> {
    Value ok = h.lt(r, h.c32(G));
    return {offset(qS, batch, tok, h.select(ok, headOf(r), kvHead)), ok};
  });
  for (int r = 0; r < 2; ++r) {
    Value rr = h.add(h.mul(ids.warp, h.c32(16)), h.add(ids.group, h.c32(8 * r)));
    Value ok = h.lt(rr, h.c32(G));
    Value lse = h.load(h.f32(), h.gep(lsePtr, h.f32(), offset(lseS, batch, tok, h.select(ok, headOf(rr), kvHead))), 4);
    Value finite = h.band(ok, h.fgt(lse, h.cf(-std::numeric_limits<float>::infinity())));
    lse2[r] = h.select(finite, h.fmul(lse, h.cf(kLog2e)), h.cf(std::numeric_limits<float>::infinity()));
  }
  forThreads(h.c32(N), [&](Value k) {
    stF(topSOff, k, h.cf(kEmpty));
    stI(topIOff, k, h.c32(-1));
  });

  // Visible compressed tokens and selection blocks of this token.
  Value sees = h.ge(tok, h.c32(spec.cmpBlock - 1));
  Value nvis = h.add(h.divs(h.maxs(h.sub(tok, h.c32(spec.cmpBlock - 1)), h.c32(0)), h.c32(spec.cmpStride)), h.c32(1));
  nvis = h.select(sees, h.mins(nvis, kvLen), h.c32(0));
  Value jt = h.divs(tok, h.c32(spec.slcBlock));
  Value blocks = h.add(jt, h.c32(1));
  Value windows = h.ceilDiv(blocks, h.c32(win.blocks));
  scf::ForOp::create(b, h.loc, h.c32(0), windows, h.c32(1), ValueRange{}, [&](OpBuilder &, Location, Value w,
                                                                            ValueRange) {
    Value J0 = h.mul(w, h.c32(win.blocks));
    Value nBlocks = h.mins(h.c32(win.blocks), h.sub(blocks, J0));
    h.barrier();
    scoreWindow(J0, nBlocks, nvis, jt);
    mergeWindow(J0, nBlocks);
    scf::YieldOp::create(h.b, h.loc);
  });

  // Phase D: thread 0 sorts the chosen blocks ascending (-1 last) and writes them.
  scf::IfOp::create(b, h.loc, h.eq(ids.tid, h.c32(0)), [&](OpBuilder &, Location) {
    auto key = [&](Value i) {
      Value v = ldI(topIOff, i);
      return h.select(h.lt(v, h.c32(0)), h.c32(std::numeric_limits<int>::max()), v);
    };
    scf::ForOp::create(h.b, h.loc, h.c32(0), h.c32(N), h.c32(1), ValueRange{}, [&](OpBuilder &, Location, Value i,
                                                                                  ValueRange) {
      // Selection sort: move the smallest of i..N-1 to i.
      auto inner = scf::ForOp::create(
          h.b, h.loc, h.add(i, h.c32(1)), h.c32(N), h.c32(1), ValueRange{i},
          [&](OpBuilder &, Location, Value j, ValueRange m) {
            scf::YieldOp::create(h.b, h.loc, ValueRange{h.select(h.lt(key(j), key(m[0])), j, m[0])});
          });
      Value m = inner.getResult(0);
      Value vi = ldI(topIOff, i), vm = ldI(topIOff, m);
      stI(topIOff, i, vm);
      stI(topIOff, m, vi);
      Value out = h.add(offset(idxS, batch, tok, kvHead), h.ext64(i));
      h.store(vm, h.gep(idxPtr, h.i32(), out), 4);
      scf::YieldOp::create(h.b, h.loc);
    });
    scf::YieldOp::create(h.b, h.loc);
  });
  gpu::ReturnOp::create(b, h.loc);
  return success();
}

} // namespace

LogicalResult buildTopNKernel(OpBuilder &builder, Location loc, const KernelSpec &spec, StringRef name) {
  return TopNKernelBuilder(builder, loc, spec, name).build();
}

} // namespace nsajit::tpl
