#include "ForwardAttention.h"

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"
#include "SelectedBlockUnion.h"
#include "SharedBarrier.h"
#include "TokenDone.h"
#include "WarpMma.h"
#include "WarpgroupMma.h"

#include "nsajit/compiler/KernelAbi.h"

#include "fmt/format.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cassert>
#include <cmath>
#include <functional>
#include <limits>

using namespace mlir;

namespace nsajit::tpl {
namespace {

// Kernel parameters in KernelAbi.h order.
struct Params {
  Value q, k, v, idx, o, lse, tokenDone;
  Value qs[3], ks[3], vs[3], idxs[3], os[3], lses[3];
  Value seqLen, kvLen;
};

// Online-softmax state of the two rows a thread holds (rows g and g + 8 of its
// warp's 16) and the output accumulators: O[n] is the 16x8 tile of dims 8n..8n+7.
struct SoftmaxState {
  Value m[2], l[2];
  std::vector<Frag4> o;

  SmallVector<Value> flatten() const {
    SmallVector<Value> v{m[0], m[1], l[0], l[1]};
    for (auto &f : o) v.append(f.begin(), f.end());
    return v;
  }
  static SoftmaxState unflatten(ValueRange v, int tiles) {
    SoftmaxState s;
    s.m[0] = v[0], s.m[1] = v[1], s.l[0] = v[2], s.l[1] = v[3];
    for (int n = 0; n < tiles; ++n) s.o.push_back({v[4 + 4 * n], v[5 + 4 * n], v[6 + 4 * n], v[7 + 4 * n]});
    return s;
  }
};

class ForwardKernelBuilder {
public:
  ForwardKernelBuilder(OpBuilder &b, Location loc, const KernelSpec &spec, StringRef name)
      : name(name.str()), h(b, loc), mma(h, spec.dtype), wg(h, spec.dtype), spec(spec), Dk(spec.headDimQK), Dv(spec.headDimV), G(spec.group),
        W(spec.tile.warps), TQ(spec.tile.tokensPerCta), C(spec.tile.kvChunk) {}

  LogicalResult build();

private:
  void stageRows(Value smemElemBase, int pitch, int rows, int dim, Value src, const RowOffsetFn &rowOffset,
                 bool wait = true, bool commit = true);
  // Starts the copies of the K and V rows keyStart .. keyStart + C - 1 into
  // buffer `buf` (nothing when !active) as one cp.async group.
  void stageChunk(Value buf, Value keyStart, Value active) { stageChunk(buf, keyStart, active, ids, W * 32); }
  // The same copies by `threads` threads numbered by who.tid.
  void stageChunk(Value buf, Value keyStart, Value active, const ThreadIds &who, int threads);
  // One chunk's online-softmax step from buffer `buf`. `bias` (union schedule):
  // log2 of each row's multiplicity of the chunk's block, added to its scores.
  SoftmaxState chunkStep(const SoftmaxState &in, Value keyStart, Value buf, const Value *bias);
  // The softmax part of a chunk step: the probabilities P (fp32, in the
  // layout of the scores `s`), the new row maxima and sums, and the factor
  // alpha that rescales the output accumulated so far.
  struct ChunkProbabilities {
    std::vector<Frag4> p;
    Value m[2], l[2], alpha[2];
  };
  // P as the A fragments of O += P V (C / 16 of them).
  std::vector<Frag4> packProbabilities(const std::vector<Frag4> &p);
  ChunkProbabilities probabilities(const SoftmaxState &in, std::vector<Frag4> s, Value keyStart, const Value *bias);
  // wgmma issued and committed, not waited for (warp specialisation's overlap).
  // `fenced`: the registers passed through wgmma.fence already.
  std::vector<Value> issueScores(Value kB, std::vector<Value> acc = {});
  std::vector<Value> issueAccumulate(const std::vector<Frag4> &o, const std::vector<Frag4> &p, Value vB,
                                     bool fenced = false);
  // The online softmax over the CTA's chunks (see its comment).
  SoftmaxState walkChunks(const SoftmaxState &init);
  // The CTA's tile without warp specialisation: stage Q, (union) walk, store.
  void buildTile(const SoftmaxState &init);
  // Warp specialisation (forwardWarpSpecialised): the producer warp's copies
  // and the consumer warpgroups' online softmax over the ring of chunks,
  // handed over by a `full` and an `empty` mbarrier a buffer.
  // `g`: the chunks the CTA walked in its earlier tiles (the ring's position).
  void produceChunks(Value g);
  SoftmaxState consumeChunks(const SoftmaxState &init, Value g);
  // The pieces of a tile's walk: the ring buffer of chunk c of a tile whose
  // chunk 0 is at ring position g, the wait for its copies, its release, and
  // the release of Q buffer qb (one arrival a consumer warp).
  Value ringBuf(Value g, Value c) { return h.rems(h.add(g, c), h.c32(stages)); }
  void waitChunk(Value g, Value c);
  void releaseChunk(Value g, Value c);
  void releaseQuery(Value qb);
  // Chunk 0 of the tile computed on its own: its softmax flattened (m, l, then P packed).
  SmallVector<Value> firstChunkAlone(const SoftmaxState &init, Value g);
  // Chunks 1 .. numChunks - 1 from chunk 0's flattened softmax: the state (O
  // without the last chunk's P V) and the last chunk's P.
  std::pair<SoftmaxState, std::vector<Frag4>> chunkLoop(ValueRange first, const SoftmaxState &init, Value g);
  // The CTA's tiles (forwardTilesPerCta): the producer stages each tile's Q
  // (two buffers) and chunks, the consumers compute and store each tile.
  void produceTiles(Value firstTile);
  void consumeTiles(Value firstTile, const SoftmaxState &init);
  // The loop both roles share: for each of the CTA's tiles that holds tokens,
  // setTile, then tileBody(j, the ring position of its first chunk).
  void walkTiles(Value firstTile, const std::function<void(Value, Value)> &tileBody);
  SharedBarrier queryBarrier(Value buf, bool full) {
    return SharedBarrier(h, smem,
                         h.add(h.c32(barrierBase + 16 * stages), h.mul(h.add(buf, h.c32(full ? 0 : 2)), h.c32(8))));
  }
  // The tile of tokens t0 .. t0 + TQ - 1: t0, tMax, the branch's keys, this
  // thread's rows and (not the union schedule) numChunks.
  void setTile(Value tileT0);
  Value rowToken(Value r) { return h.add(t0, h.divs(r, h.c32(G))); }
  Value rowHead(Value r) { return h.add(h.mul(kvHead, h.c32(G)), h.rems(r, h.c32(G))); }
  Value rowExists(Value r) { return h.band(h.lt(h.divs(r, h.c32(G)), h.c32(TQ)), h.lt(rowToken(r), p.seqLen)); }
  RowOffsetFn queryRows();
  SharedBarrier ringBarrier(Value buf, bool full) {
    return SharedBarrier(h, smem, h.add(h.c32(barrierBase), h.mul(h.add(buf, h.c32(full ? 0 : stages)), h.c32(8))));
  }
  std::pair<Value, Value> chunkAt(Value c);
  // The tensor-core products of a chunk step: S = Q K^T (C/8 tiles of this
  // warp's 16 rows) and O += P V with P as A fragments (C/16 of them).
  std::vector<Frag4> scoresSync(Value kB);
  std::vector<Frag4> scoresWarpgroup(Value kB);
  std::vector<Frag4> accumulateSync(std::vector<Frag4> o, const std::vector<Frag4> &p, Value vB);
  std::vector<Frag4> accumulateWarpgroup(std::vector<Frag4> o, const std::vector<Frag4> &p, Value vB);
  // The A fragment of this warp's 16 query rows for head dims 16kk..16kk+15.
  Frag4 queryFragment(int kk);
  // Union schedule: the row biases of chunk c, and whether any row of the warp
  // takes part in it.
  std::pair<std::array<Value, 2>, Value> unionRowBias(Value c);
  // The biases chunkStep and probabilities take: chunk c's row biases (held in
  // `store`) with the union schedule, else none.
  const Value *chunkBias(Value c, std::array<Value, 2> &store) {
    if (!unionSchedule())
      return nullptr;
    store = unionRowBias(c).first;
    return store.data();
  }
  // Warp specialisation with the union schedule: the union of the tile in Q
  // buffer qb, which the producer builds next to that tile's Q.
  std::unique_ptr<SelectedBlockUnion> tileUnion(Value qb, bool producer);
  // The two-kernel schedule (TokenDone.h): the union limit, whether a tile of
  // `unionBlocks` distinct blocks is left to the kernel launched next, and the
  // chunks this kernel walks for it (none if left).
  TokenDone handOver() { return TokenDone(h, p.tokenDone, batch, kvHead, p.seqLen); }
  Value unionLimit() { return handOver().unionLimit(selectedUnionLimit(spec)); }
  Value leftToNextKernel(Value unionBlocks) { return handOver().leaves(unionBlocks, selectedUnionLimit(spec)); }
  Value tileChunks(Value unionBlocks) {
    return h.select(leftToNextKernel(unionBlocks), h.c32(0), h.mul(unionBlocks, h.c32(spec.slcBlock / C)));
  }
  void storeOutputs(const SoftmaxState &s);
  Value kBaseOf(Value buf) { return h.add(h.c32(kBase), h.mul(buf, h.c32(bufElems))); }
  Value vBaseOf(Value buf) { return h.add(kBaseOf(buf), h.c32(C * Dk)); }
  bool unionSchedule() const { return spec.branch == Branch::Selected && TQ > 1; }
  // sm_90a with whole warpgroups: wgmma on swizzled tiles, else mma.sync (K/V
  // swizzled, Q in padded rows). The selected branch only in its
  // warp-specialised union tiles: with G = 16 a warpgroup spans 4 tokens and
  // computes every block any of them selected, where a warp skips the blocks
  // of other tokens, so it pays only on local indices (the runtime's
  // two-kernel schedule leaves it the tiles of small unions).
  bool warpgroupMma() const { return forwardUsesWarpgroupMma(spec); }

  std::string name;
  IRBuilderHelpers h;
  WarpMma mma;
  WarpgroupMma wg;
  const KernelSpec &spec;
  const int Dk, Dv, G, W, TQ, C;
  // K/V chunk buffers: a ring of `stages` (walkChunks).
  const int stages = forwardStages(spec);
  Value numChunks;
  // Shared layout, in elements: Q rows, then the `stages` K/V chunk buffers,
  // then the union.
  int qPitch = 0, qBase = 0, kBase = 0, bufElems = 0;
  const bool specialised = forwardWarpSpecialised(spec);
  int barrierBase = 0; // bytes: the ring's mbarriers (specialised)
  int unionBase = 0;   // bytes: the union scratch (two with warp specialisation)
  ThreadIds producerIds; // the producer warpgroup's threads, numbered from 0
  const int producerThreads = forwardProducerThreads(spec);
  // setmaxnreg: the producer warpgroup gives registers to the consumers (the CTA
  // starts at 168 a thread: 384 threads; 4 x 40 + 8 x 232 fit an SM's 64K).
  static constexpr int producerRegs = 40, consumerRegs = 232;
  Params p;
  ThreadIds ids;
  Value group, tig, batch, kvHead, t0, tMax, smem;
  Value qTileBytes; // the Q tile the scores read (wgmma)
  Value tok[2], head[2], rowValid[2], rowInWarp[2];
  std::unique_ptr<BranchKeys> keys;
  std::unique_ptr<SelectedBlockUnion> blockUnion;
};

void ForwardKernelBuilder::stageRows(Value smemElemBase, int pitch, int rows, int dim, Value src,
                                     const RowOffsetFn &rowOffset, bool wait, bool commit) {
  tpl::stageRows(h, ids, W * 32, smem, smemElemBase, pitch, rows, dim, src, rowOffset, wait, commit);
}

void ForwardKernelBuilder::stageChunk(Value buf, Value keyStart, Value active, const ThreadIds &who, int threads) {
  // Zeros outside [0, kvLen).
  auto keyRow = [&](Value strides[3]) {
    return [&, strides](Value row) -> std::pair<Value, Value> {
      Value key = h.add(keyStart, row);
      Value valid = h.band(h.ge(key, h.c32(0)), h.lt(key, p.kvLen));
      Value off = h.add(h.add(h.mul(h.ext64(batch), strides[0]), h.mul(h.ext64(key), strides[1])),
                        h.mul(h.ext64(kvHead), strides[2]));
      return {off, valid};
    };
  };
  // K and V in 128-byte-swizzled panels for both products: wgmma reads them so,
  // and so do mma.sync's ldmatrix without bank conflicts. (Padded rows, the
  // mma.sync layout before, put a row's copies at smem addresses off the
  // 128-byte lines, and Nsight Compute counted 1.5x the ideal L2 sectors for
  // them: H100, T = 64k, NSA [paper], the L2-bound selected forward 28.6 -> 21.8
  // ms with the panels; bench/results/2026-11-26-h100-session10/s10run6.)
  // The producer's copies are unrolled: with the row loop, each copy's address
  // registers were rewritten by the next pass while the copy still held them,
  // and the producer (busy 83 % of its time) kept the consumers waiting for
  // chunks. H100, T = 64k, ms: window [main] 3.04-3.07 -> 2.90-2.91, [paper]
  // 3.29 -> 3.19, compressed [paper] 9.48 -> 9.26, the selected union kernel
  // on local indices 10.88 -> 9.71 (bench/results/2026-11-27-h100-session17/s17run4).
  const bool unrolled = specialised;
  scf::IfOp::create(h.b, h.loc, active, [&](OpBuilder &, Location) {
    stageSwizzledPanels(h, who, threads, smem, kBaseOf(buf), C, Dk, p.k, keyRow(p.ks), /*wait=*/false,
                        /*commit=*/false, unrolled);
    stageSwizzledPanels(h, who, threads, smem, vBaseOf(buf), C, Dv, p.v, keyRow(p.vs), /*wait=*/false,
                        /*commit=*/false, unrolled);
    scf::YieldOp::create(h.b, h.loc);
  });
  commitStaged(h);
}

std::pair<std::array<Value, 2>, Value> ForwardKernelBuilder::unionRowBias(Value c) {
  return blockUnion->rowBias(h.divs(c, h.c32(spec.slcBlock / C)), rowInWarp, G);
}

std::vector<Frag4> ForwardKernelBuilder::scoresSync(Value kB) {
  // Fragments by ldmatrix.x4: lane l addresses row l % 8 of matrix m = l / 8.
  const int nTiles = C / 8;
  Value zero = h.cf(0.0f);
  std::vector<Frag4> s(nTiles, Frag4{zero, zero, zero, zero});
  Value mat = h.divs(ids.lane, h.c32(8)), matRow = h.rems(ids.lane, h.c32(8));
  Value matLo = h.rems(mat, h.c32(2)), matHi = h.divs(mat, h.c32(2));
  // K (B operand, [key][dim], swizzled panels): matrices (dims 0-7 | 8-15) of
  // keys 0-7, then of keys 8-15: two n-tiles per load. Lane row `key` holds its
  // 16-byte chunk c of a panel at chunk c ^ (key % 8), and key % 8 = matRow.
  Value keyRowBase = h.add(kB, h.mul(h.add(h.mul(matHi, h.c32(8)), matRow), h.c32(64)));
  Value laneSwizzle = arith::XOrIOp::create(h.b, h.loc, matLo, matRow);
  for (int kk = 0; kk < Dk / 16; ++kk) {
    Frag4 a = queryFragment(kk);
    // Dims 16 kk + 8 matLo: chunk 2 kk + matLo, in panel kk / 4.
    Value chunk = arith::XOrIOp::create(h.b, h.loc, laneSwizzle, h.c32((2 * kk) % 8));
    Value at = h.add(keyRowBase, h.add(h.c32((kk / 4) * C * 64), h.mul(chunk, h.c32(8))));
    for (int n = 0; n < nTiles; n += 2) {
      Frag4 b = mma.loadMatrices(smem, h.add(at, h.c32(n * 8 * 64)), /*trans=*/false);
      s[n] = mma.mma(a, Frag2{b[0], b[1]}, s[n]);
      s[n + 1] = mma.mma(a, Frag2{b[2], b[3]}, s[n + 1]);
    }
  }
  return s;
}

std::vector<Frag4> ForwardKernelBuilder::scoresWarpgroup(Value kB) {
  // Q (this warpgroup's 64 of the W * 16 rows) against the C keys.
  return WarpgroupMma::tiles(wg.wait(issueScores(kB), 0));
}

std::vector<Frag4> ForwardKernelBuilder::accumulateSync(std::vector<Frag4> o, const std::vector<Frag4> &pFrags,
                                                        Value vB) {
  // V (B operand, [key][dim], swizzled panels) by ldmatrix.x4.trans: matrices
  // (keys 0-7 | 8-15) of dims 0-7, then of dims 8-15: two n-tiles per load.
  Value mat = h.divs(ids.lane, h.c32(8)), matRow = h.rems(ids.lane, h.c32(8));
  Value matLo = h.rems(mat, h.c32(2)), matHi = h.divs(mat, h.c32(2));
  Value keyRowBase = h.add(vB, h.mul(h.add(h.mul(matLo, h.c32(8)), matRow), h.c32(64)));
  Value laneSwizzle = arith::XOrIOp::create(h.b, h.loc, matHi, matRow);
  for (int kk = 0; kk < C / 16; ++kk)
    for (int n = 0; n < Dv / 8; n += 2) {
      // Dims 8 n + 8 matHi: chunk n % 8 + matHi of panel n / 8; keys 16 kk + ...
      Value chunk = arith::XOrIOp::create(h.b, h.loc, laneSwizzle, h.c32(n % 8));
      Value at = h.add(keyRowBase, h.add(h.c32((n / 8) * C * 64 + 16 * kk * 64), h.mul(chunk, h.c32(8))));
      Frag4 b = mma.loadMatrices(smem, at, /*trans=*/true);
      o[n] = mma.mma(pFrags[kk], Frag2{b[0], b[1]}, o[n]);
      o[n + 1] = mma.mma(pFrags[kk], Frag2{b[2], b[3]}, o[n + 1]);
    }
  return o;
}

std::vector<Frag4> ForwardKernelBuilder::accumulateWarpgroup(std::vector<Frag4> o, const std::vector<Frag4> &pFrags,
                                                             Value vB) {
  // V [key][dim] is B stored N-major: its rows are the K = C keys.
  return WarpgroupMma::tiles(wg.wait(issueAccumulate(o, pFrags, vB), 0));
}

Frag4 ForwardKernelBuilder::queryFragment(int kk) {
  // Q (A operand): matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15) in a0..a3 order.
  Value mat = h.divs(ids.lane, h.c32(8)), matRow = h.rems(ids.lane, h.c32(8));
  Value matLo = h.rems(mat, h.c32(2)), matHi = h.divs(mat, h.c32(2));
  Value qRow = h.add(h.c32(qBase), h.add(h.mul(h.add(h.mul(ids.warp, h.c32(16)), h.add(h.mul(matLo, h.c32(8)), matRow)),
                                               h.c32(qPitch)),
                                         h.mul(matHi, h.c32(8))));
  return mma.loadMatrices(smem, h.add(qRow, h.c32(16 * kk)), /*trans=*/false);
}

SoftmaxState ForwardKernelBuilder::chunkStep(const SoftmaxState &in, Value keyStart, Value buf, const Value *bias) {
  Value kB = kBaseOf(buf), vB = vBaseOf(buf);
  ChunkProbabilities pr = probabilities(in, warpgroupMma() ? scoresWarpgroup(kB) : scoresSync(kB), keyStart, bias);
  SoftmaxState out;
  for (int r = 0; r < 2; ++r) out.m[r] = pr.m[r], out.l[r] = pr.l[r];
  out.o = in.o;
  for (auto &f : out.o)
    for (int e = 0; e < 4; ++e) f[e] = h.fmul(f[e], pr.alpha[e / 2]);
  std::vector<Frag4> pFrags = packProbabilities(pr.p);
  out.o = warpgroupMma() ? accumulateWarpgroup(out.o, pFrags, vB) : accumulateSync(out.o, pFrags, vB);
  return out;
}

std::vector<Value> ForwardKernelBuilder::issueScores(Value kB, std::vector<Value> acc) {
  if (acc.empty())
    acc = wg.fence(std::vector<Value>(C / 2, h.cf(0.0f)));
  Value warpgroupRows = h.mul(h.divs(ids.warp, h.c32(4)), h.c32(64));
  acc = wg.issueProductABt(acc, smem, {qTileBytes, W * 16}, warpgroupRows, {h.mul(kB, h.c32(2)), C}, Dk);
  return wg.commit(acc);
}

std::vector<Value> ForwardKernelBuilder::issueAccumulate(const std::vector<Frag4> &o, const std::vector<Frag4> &pFrags,
                                                         Value vB, bool fenced) {
  std::vector<Value> regs = WarpgroupMma::flatten(o);
  const size_t nAcc = regs.size();
  for (auto &f : pFrags) regs.insert(regs.end(), f.begin(), f.end());
  if (!fenced)
    regs = wg.fence(regs);
  std::vector<Value> acc(regs.begin(), regs.begin() + nAcc);
  std::vector<Frag4> a = WarpgroupMma::tiles(ArrayRef<Value>(regs).drop_front(nAcc));
  return wg.commit(wg.issueProductAB(acc, a, smem, {h.mul(vB, h.c32(2)), C}));
}

ForwardKernelBuilder::ChunkProbabilities ForwardKernelBuilder::probabilities(const SoftmaxState &in,
                                                                             std::vector<Frag4> s, Value keyStart,
                                                                             const Value *bias) {
  const int nTiles = C / 8;
  Value zero = h.cf(0.0f);

  // Scores stay raw until the exponent: the scale is positive, so a row's maximum is
  // taken on the raw (masked) scores and scaled once, and each probability is
  // 2^(s * scale * log2(e) + bias - m), one fma before the ex2 (instead of a multiply,
  // the union's bias add and a subtract per score). A chunk every key of which every
  // token of the CTA sees (the inside of a window, old compressed tokens, blocks before
  // the CTA) skips the per-key mask.
  const float scaleLog2 = spec.effectiveScale() * 1.4426950408889634f;
  Value scaleC = h.cf(scaleLog2);
  Value negInf = h.cf(-std::numeric_limits<float>::infinity());
  auto maskScores = [&](bool mask) {
    SmallVector<Value> v; // the C/2 scores, then the two row maxima
    Value keyBase = h.add(keyStart, h.mul(tig, h.c32(2)));
    Value rowMax[2] = {negInf, negInf};
    for (int n = 0; n < nTiles; ++n)
      for (int e = 0; e < 4; ++e) {
        int r = e / 2;
        Value raw = s[n][e];
        if (mask) {
          Value key = h.add(keyBase, h.c32(n * 8 + (e & 1)));
          Value inRange = h.band(h.ge(key, h.c32(0)), h.lt(key, p.kvLen));
          raw = h.select(h.band(inRange, keys->visible(tok[r], key)), raw, negInf);
        }
        v.push_back(raw);
        rowMax[r] = h.fmax(rowMax[r], raw);
      }
    v.push_back(rowMax[0]);
    v.push_back(rowMax[1]);
    return v;
  };
  auto masked = scf::IfOp::create(
      h.b, h.loc, keys->chunkFullyVisible(keyStart, C),
      [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, maskScores(false)); },
      [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, maskScores(true)); });
  for (int i = 0; i < C / 2; ++i) s[i / 4][i % 4] = masked.getResult(i);
  Value rowMax[2] = {masked.getResult(C / 2), masked.getResult(C / 2 + 1)};

  // Online softmax: rescale by 2^(m_old - m_new); a row with no visible key
  // so far keeps m = -inf and uses 0 as its reference to avoid inf - inf.
  ChunkProbabilities out;
  Value *alpha = out.alpha, mUse[2], offset[2];
  for (int r = 0; r < 2; ++r) {
    Value mx = rowMax[r];
    mx = h.fmax(mx, h.shflXor(mx, 1));
    mx = h.fmax(mx, h.shflXor(mx, 2));
    // In the base-2 domain (-inf stays -inf: the scale is positive, the bias finite or -inf).
    mx = bias ? h.fma(mx, scaleC, bias[r]) : h.fmul(mx, scaleC);
    out.m[r] = h.fmax(in.m[r], mx);
    mUse[r] = h.select(h.feq(out.m[r], negInf), h.cf(0.0f), out.m[r]);
    alpha[r] = h.exp2(h.fsub(in.m[r], mUse[r]));
    offset[r] = bias ? h.fsub(bias[r], mUse[r]) : h.fsub(h.cf(0.0f), mUse[r]);
  }
  Value rowSum[2] = {zero, zero};
  for (int n = 0; n < nTiles; ++n)
    for (int e = 0; e < 4; ++e) {
      int r = e / 2;
      s[n][e] = h.exp2(h.fma(s[n][e], scaleC, offset[r]));
      rowSum[r] = h.fadd(rowSum[r], s[n][e]);
    }
  for (int r = 0; r < 2; ++r) out.l[r] = h.fadd(h.fmul(in.l[r], alpha[r]), rowSum[r]);
  out.p = std::move(s);
  return out;
}

std::vector<Frag4> ForwardKernelBuilder::packProbabilities(const std::vector<Frag4> &s) {
  // The C fragments of two adjacent S tiles form one A fragment.
  std::vector<Frag4> p;
  for (int kk = 0; kk < C / 16; ++kk)
    p.push_back({mma.packFloats(s[2 * kk][0], s[2 * kk][1]), mma.packFloats(s[2 * kk][2], s[2 * kk][3]),
                 mma.packFloats(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                 mma.packFloats(s[2 * kk + 1][2], s[2 * kk + 1][3])});
  return p;
}

std::pair<Value, Value> ForwardKernelBuilder::chunkAt(Value c) {
  // First key of chunk c and whether it holds keys (false past the last chunk).
  Value inRange = h.lt(c, numChunks);
  Value cSafe = h.select(inRange, c, h.c32(0)); // never read an index past the lists
  if (unionSchedule()) {
    const int chunksPerBlock = spec.slcBlock / C;
    Value blk = blockUnion->block(h.divs(cSafe, h.c32(chunksPerBlock)));
    Value start = h.add(h.mul(blk, h.c32(spec.slcBlock)), h.mul(h.rems(cSafe, h.c32(chunksPerBlock)), h.c32(C)));
    return {h.select(inRange, start, h.c32(0)), inRange};
  }
  auto [start, active] = keys->chunkStart(cSafe);
  return {start, h.band(inRange, active)};
}

SoftmaxState ForwardKernelBuilder::walkChunks(const SoftmaxState &init) {
  // A software pipeline over `stages` K/V buffers, one cp.async group a chunk
  // (empty when it is skipped):
  // - wgmma (a ring of three, most often): chunk c + stages - 1 is copied while
  //   chunk c is computed. wgmma reads the copies through the async proxy, behind
  //   a proxy fence that would also wait for copies still in flight, so an
  //   iteration first waits for its own chunk and fences it, then meets the other
  //   warps at the barrier (the chunk is visible, and every warp is done with the
  //   buffer of chunk c - 1), then starts the copies into that buffer. One
  //   barrier a chunk.
  // - mma.sync (two buffers): the next chunk's copies start first, into the
  //   buffer every warp left at the previous iteration's closing barrier, and
  //   fly while the iteration waits for its own (the selected forward is bound by
  //   these L2 reads: copying after the barrier, with one barrier a chunk, took
  //   24.34 ms against 23.63 at T = 64k, random indices; s9run6 and s9run4).
  //
  // (Issuing chunk c + 1's scores before chunk c's softmax, FA3's overlap inside a
  // warpgroup, needs 152 registers with Dk = 192: one CTA an SM, which lost to two
  // without it, e.g. compressed l = 32, d = 16 18.4 ms against 13.7;
  // bench/results/2026-11-26-h100-session9/s9run2.)
  const int S = stages;
  const int oTiles = Dv / 8;
  const bool copiesFirst = !warpgroupMma();
  assert((!copiesFirst || S == 2) && "the mma.sync walk has two buffers");
  for (int i = 0; i < S - 1; ++i) {
    auto [start, active] = chunkAt(h.c32(i));
    stageChunk(h.c32(i), start, active);
  }
  auto stageAhead = [&](Value c) {
    Value nextC = h.add(c, h.c32(S - 1));
    auto [nextStart, nextActive] = chunkAt(nextC);
    stageChunk(h.rems(nextC, h.c32(S)), nextStart, nextActive);
  };
  auto loop = scf::ForOp::create(
      h.b, h.loc, h.c32(0), numChunks, h.c32(1), init.flatten(), [&](OpBuilder &, Location, Value c, ValueRange it) {
        if (copiesFirst) {
          stageAhead(c);
          waitStaged(h, /*pending=*/1);
          h.barrier();
        } else {
          waitStaged(h, S - 2);
          fenceAsyncProxy(h);
          h.barrier();
          stageAhead(c);
        }
        auto [keyStart, compute] = chunkAt(c);
        std::array<Value, 2> bias;
        if (unionSchedule()) {
          auto [rowBias, takesPart] = unionRowBias(c);
          bias = rowBias;
          compute = h.band(compute, takesPart); // warp-uniform: skip blocks no row of the warp selected
        }
        SoftmaxState cur = SoftmaxState::unflatten(it, oTiles);
        auto step = scf::IfOp::create(
            h.b, h.loc, compute,
            [&](OpBuilder &, Location) {
              scf::YieldOp::create(
                  h.b, h.loc,
                  chunkStep(cur, keyStart, h.rems(c, h.c32(S)), unionSchedule() ? bias.data() : nullptr).flatten());
            },
            [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, it); });
        if (copiesFirst)
          h.barrier(); // the buffer is overwritten by the next iteration's copies
        scf::YieldOp::create(h.b, h.loc, step.getResults());
      });
  waitStaged(h); // the copies issued past the last chunk are empty; leave nothing in flight
  return SoftmaxState::unflatten(loop.getResults(), oTiles);
}

void ForwardKernelBuilder::produceChunks(Value g) {
  // Chunk c goes into buffer c % S once the consumers released that buffer's
  // previous chunk (its (c / S - 1)-th `empty` phase). Each producer thread's
  // copies arrive on the buffer's `full` barrier when they land (one arrival a
  // thread completes a phase): the producer never waits for its copies, only
  // for free buffers. (A producer that waited for chunk c - 1's copies before
  // announcing it, after staging chunk c, held the consumers back: s11run2.)
  const int S = stages;
  const ThreadIds &lanes = producerIds;
  scf::ForOp::create(h.b, h.loc, h.c32(0), numChunks, h.c32(1), ValueRange{},
                     [&](OpBuilder &, Location, Value c, ValueRange) {
                       Value ring = h.add(g, c);
                       Value buf = h.rems(ring, h.c32(S));
                       scf::IfOp::create(h.b, h.loc, h.ge(ring, h.c32(S)), [&](OpBuilder &, Location) {
                         ringBarrier(buf, /*full=*/false).wait(h.band(h.sub(h.divs(ring, h.c32(S)), h.c32(1)), h.c32(1)));
                         scf::YieldOp::create(h.b, h.loc);
                       });
                       auto [start, active] = chunkAt(c);
                       stageChunk(buf, start, active, lanes, producerThreads);
                       ringBarrier(buf, /*full=*/true).arriveWhenCopiesLand();
                       scf::YieldOp::create(h.b, h.loc);
                     });
}

void ForwardKernelBuilder::waitChunk(Value g, Value c) {
  // The copies landed in the generic proxy; this thread's proxy fence after
  // the wait orders them before its wgmma's async-proxy reads.
  Value ring = h.add(g, c);
  ringBarrier(h.rems(ring, h.c32(stages)), /*full=*/true).wait(h.band(h.divs(ring, h.c32(stages)), h.c32(1)));
  fenceAsyncProxy(h);
}

void ForwardKernelBuilder::releaseChunk(Value g, Value c) {
  scf::IfOp::create(h.b, h.loc, h.eq(ids.lane, h.c32(0)), [&](OpBuilder &, Location) {
    ringBarrier(ringBuf(g, c), /*full=*/false).arrive();
    scf::YieldOp::create(h.b, h.loc);
  });
}

void ForwardKernelBuilder::releaseQuery(Value qb) {
  scf::IfOp::create(h.b, h.loc, h.eq(ids.lane, h.c32(0)), [&](OpBuilder &, Location) {
    queryBarrier(qb, /*full=*/false).arrive();
    scf::YieldOp::create(h.b, h.loc);
  });
}

SmallVector<Value> ForwardKernelBuilder::firstChunkAlone(const SoftmaxState &init, Value g) {
  Value c0 = h.c32(0);
  waitChunk(g, c0);
  std::array<Value, 2> bias;
  ChunkProbabilities first = probabilities(init, WarpgroupMma::tiles(wg.wait(issueScores(kBaseOf(ringBuf(g, c0))), 0)),
                                           chunkAt(c0).first, chunkBias(c0, bias));
  SmallVector<Value> v{first.m[0], first.m[1], first.l[0], first.l[1]};
  for (auto &f : packProbabilities(first.p)) v.append(f.begin(), f.end());
  return v;
}

std::pair<SoftmaxState, std::vector<Frag4>> ForwardKernelBuilder::chunkLoop(ValueRange first, const SoftmaxState &init,
                                                                            Value g) {
  // FA3's overlap inside a warpgroup: chunk c's scores and chunk c - 1's P V
  // are issued together, and chunk c's softmax runs while P V is computed.
  // The first chunk's softmax and the last chunk's P V are outside the loop,
  // so that no in-flight accumulator crosses a branch. Every chunk holds keys
  // (chunkAt's flag is true: the dense branches' range, the union's blocks).
  const int oTiles = Dv / 8;
  SmallVector<Value> carried(first.begin(), first.begin() + 4);
  for (auto &f : init.o) carried.append(f.begin(), f.end()); // zeros: no rescale
  carried.append(first.begin() + 4, first.end());
  auto loop = scf::ForOp::create(
      h.b, h.loc, h.c32(1), numChunks, h.c32(1), carried, [&](OpBuilder &, Location, Value c, ValueRange it) {
        SoftmaxState cur = SoftmaxState::unflatten(it, oTiles);
        std::vector<Frag4> pPrev = WarpgroupMma::tiles(SmallVector<Value>(it.drop_front(4 + 4 * oTiles)));
        Value prev = h.sub(c, h.c32(1));
        waitChunk(g, c);
        // One fence for both products: every register they read is
        // written before the first is issued (else ptxas serialises them).
        std::vector<Value> regs(C / 2, h.cf(0.0f));
        for (auto &f : cur.o) regs.insert(regs.end(), f.begin(), f.end());
        for (auto &f : pPrev) regs.insert(regs.end(), f.begin(), f.end());
        regs = wg.fence(regs);
        std::vector<Value> sAcc = issueScores(kBaseOf(ringBuf(g, c)), std::vector<Value>(regs.begin(), regs.begin() + C / 2));
        ArrayRef<Value> rest = ArrayRef<Value>(regs).drop_front(C / 2);
        std::vector<Value> oAcc = issueAccumulate(WarpgroupMma::tiles(rest.take_front(4 * oTiles)),
                                                  WarpgroupMma::tiles(rest.drop_front(4 * oTiles)),
                                                  vBaseOf(ringBuf(g, prev)), /*fenced=*/true);
        sAcc = wg.wait(sAcc, 1);
        std::array<Value, 2> bias;
        ChunkProbabilities pr = probabilities(cur, WarpgroupMma::tiles(sAcc), chunkAt(c).first, chunkBias(c, bias));
        oAcc = wg.wait(oAcc, 0);
        releaseChunk(g, prev);
        // P is packed only now: its registers are the A operand of the P V
        // just completed (writing them while it runs serialises the wgmma).
        SmallVector<Value> next{pr.m[0], pr.m[1], pr.l[0], pr.l[1]};
        for (size_t i = 0; i < oAcc.size(); ++i) next.push_back(h.fmul(oAcc[i], pr.alpha[(i % 4) / 2]));
        for (auto &f : packProbabilities(pr.p)) next.append(f.begin(), f.end());
        scf::YieldOp::create(h.b, h.loc, next);
      });
  SoftmaxState last = SoftmaxState::unflatten(loop.getResults(), oTiles);
  return {last, WarpgroupMma::tiles(SmallVector<Value>(loop.getResults().drop_front(4 + 4 * oTiles)))};
}

SoftmaxState ForwardKernelBuilder::consumeChunks(const SoftmaxState &init, Value g) {
  // Chunk c: wait for its `full` phase, compute, and release the buffer (one
  // arrival a consumer warp, after wgmma's reads of it are complete).
  const int oTiles = Dv / 8;
  auto any = scf::IfOp::create(
      h.b, h.loc, h.gt(numChunks, h.c32(0)),
      [&](OpBuilder &, Location) {
        auto [last, pLast] = chunkLoop(firstChunkAlone(init, g), init, g);
        Value lastC = h.sub(numChunks, h.c32(1));
        last.o = WarpgroupMma::tiles(wg.wait(issueAccumulate(last.o, pLast, vBaseOf(ringBuf(g, lastC))), 0));
        releaseChunk(g, lastC);
        scf::YieldOp::create(h.b, h.loc, last.flatten());
      },
      [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, init.flatten()); });
  return SoftmaxState::unflatten(any.getResults(), oTiles);
}

void ForwardKernelBuilder::walkTiles(Value firstTile, const std::function<void(Value, Value)> &tileBody) {
  // Both roles walk the same tiles and skip the same ones (past the sequence),
  // so the barriers' phases and the ring position agree between them.
  scf::ForOp::create(
      h.b, h.loc, h.c32(0), h.c32(forwardTilesPerCta(spec)), h.c32(1), ValueRange{h.c32(0)},
      [&](OpBuilder &, Location, Value j, ValueRange it) {
        Value tileT0 = h.mul(h.add(firstTile, j), h.c32(TQ));
        auto tile = scf::IfOp::create(
            h.b, h.loc, h.lt(tileT0, p.seqLen),
            [&](OpBuilder &, Location) {
              setTile(tileT0);
              tileBody(j, it[0]);
              scf::YieldOp::create(h.b, h.loc, ValueRange{h.add(it[0], numChunks)});
            },
            [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, it); });
        scf::YieldOp::create(h.b, h.loc, tile.getResults());
      });
}

std::unique_ptr<SelectedBlockUnion> ForwardKernelBuilder::tileUnion(Value qb, bool producer) {
  Value base = h.add(h.c32(unionBase), h.mul(qb, h.c32(selectedUnionSharedBytes(TQ, spec.slcCount))));
  if (!producer)
    return std::make_unique<SelectedBlockUnion>(h, ids, W * 32, smem, base, spec, TQ);
  // Barrier 0 is the CTA's; the producer warpgroup meets at barrier 1.
  return std::make_unique<SelectedBlockUnion>(h, producerIds, producerThreads, smem, base, spec, TQ,
                                              [this] { h.namedBarrier(1, producerThreads); });
}

void ForwardKernelBuilder::produceTiles(Value firstTile) {
  // Tile j's Q (and with the union schedule its union) goes into buffer j % 2
  // once the consumers released its tile j - 2.
  const ThreadIds &lanes = producerIds;
  walkTiles(firstTile, [&](Value j, Value ringPos) {
    Value qb = h.rems(j, h.c32(2));
    scf::IfOp::create(h.b, h.loc, h.ge(j, h.c32(2)), [&](OpBuilder &, Location) {
      queryBarrier(qb, /*full=*/false).wait(h.band(h.sub(h.divs(j, h.c32(2)), h.c32(1)), h.c32(1)));
      scf::YieldOp::create(h.b, h.loc);
    });
    auto stageQuery = [&] {
      stageSwizzledPanels(h, lanes, producerThreads, smem, h.mul(qb, h.c32(W * 16 * Dk)), W * 16, Dk, p.q,
                          queryRows(), /*wait=*/false);
    };
    if (unionSchedule()) {
      // The Q copies of a tile it computes fly while the union's list is
      // built; a tile left to the next kernel is only counted, its Q not
      // loaded (that took most of the schedule's cost on random indices:
      // 1.6 GB of Q for the paper's shape). The plain arrival releases the
      // union's stores to the consumers (the barrier expects two arrivals a
      // producer thread).
      blockUnion = tileUnion(qb, /*producer=*/true);
      Value bitmap = h.c32(unionBase + 2 * selectedUnionSharedBytes(TQ, spec.slcCount));
      blockUnion->build(BranchKeys::IndexInput{p.idx, {p.idxs[0], p.idxs[1], p.idxs[2]}}, batch, kvHead, t0,
                        p.seqLen, p.kvLen, unionLimit(), bitmap, [&](Value unionBlocks) {
                          scf::IfOp::create(h.b, h.loc, h.bnot(leftToNextKernel(unionBlocks)),
                                            [&](OpBuilder &, Location) {
                                              stageQuery();
                                              scf::YieldOp::create(h.b, h.loc);
                                            });
                        });
      numChunks = tileChunks(blockUnion->count());
      queryBarrier(qb, /*full=*/true).arrive();
    } else {
      stageQuery();
    }
    queryBarrier(qb, /*full=*/true).arriveWhenCopiesLand();
    produceChunks(ringPos);
  });
  waitStaged(h); // nothing in flight when the warps exit
}

void ForwardKernelBuilder::consumeTiles(Value firstTile, const SoftmaxState &init) {
  walkTiles(firstTile, [&](Value j, Value ringPos) {
    Value qb = h.rems(j, h.c32(2));
    queryBarrier(qb, /*full=*/true).wait(h.band(h.divs(j, h.c32(2)), h.c32(1)));
    fenceAsyncProxy(h);
    qTileBytes = h.mul(qb, h.c32(2 * W * 16 * Dk));
    Value computed = h.cbool(true);
    if (unionSchedule()) {
      blockUnion = tileUnion(qb, /*producer=*/false);
      numChunks = tileChunks(blockUnion->count());
      computed = h.bnot(leftToNextKernel(blockUnion->count()));
    }
    SoftmaxState state = consumeChunks(init, ringPos);
    // The tile's scores are complete: its Q buffer is free.
    releaseQuery(qb);
    scf::IfOp::create(h.b, h.loc, computed, [&](OpBuilder &, Location) {
      storeOutputs(state);
      scf::YieldOp::create(h.b, h.loc);
    });
    if (unionSchedule())
      handOver().mark(ids, t0, TQ, computed);
  });
}

void ForwardKernelBuilder::setTile(Value tileT0) {
  t0 = tileT0;
  tMax = h.mins(h.sub(p.seqLen, h.c32(1)), h.add(t0, h.c32(TQ - 1)));
  keys = std::make_unique<BranchKeys>(h, spec, BranchKeys::IndexInput{p.idx, {p.idxs[0], p.idxs[1], p.idxs[2]}},
                                      p.kvLen, batch, kvHead, t0, tMax);
  // Row r of the CTA tile is (token t0 + r / G, query head kvHead * G + r % G).
  for (int r = 0; r < 2; ++r) {
    rowInWarp[r] = h.add(h.mul(ids.warp, h.c32(16)), h.add(group, h.c32(8 * r)));
    tok[r] = rowToken(rowInWarp[r]);
    head[r] = rowHead(rowInWarp[r]);
    rowValid[r] = rowExists(rowInWarp[r]);
  }
  if (!unionSchedule())
    numChunks = keys->numChunks();
}

RowOffsetFn ForwardKernelBuilder::queryRows() {
  return [this](Value r) -> std::pair<Value, Value> {
    Value off = h.add(h.add(h.mul(h.ext64(batch), p.qs[0]), h.mul(h.ext64(rowToken(r)), p.qs[1])),
                      h.mul(h.ext64(rowHead(r)), p.qs[2]));
    return {off, rowExists(r)};
  };
}

void ForwardKernelBuilder::storeOutputs(const SoftmaxState &s) {
  const float ln2 = 0.6931471805599453f;
  Value zero = h.cf(0.0f);
  Value negInf = h.cf(-std::numeric_limits<float>::infinity());
  for (int r = 0; r < 2; ++r) {
    Value l = s.l[r];
    l = h.fadd(l, h.shflXor(l, 1));
    l = h.fadd(l, h.shflXor(l, 2));
    Value any = h.fgt(l, zero);
    Value inv = h.select(any, h.fdiv(h.cf(1.0f), h.select(any, l, h.cf(1.0f))), zero);
    Value lse = h.select(any, h.fmul(h.fadd(s.m[r], h.log2(h.select(any, l, h.cf(1.0f)))), h.cf(ln2)), negInf);
    Value row64 = h.add(h.mul(h.ext64(batch), p.os[0]),
                        h.add(h.mul(h.ext64(tok[r]), p.os[1]), h.mul(h.ext64(head[r]), p.os[2])));
    scf::IfOp::create(h.b, h.loc, rowValid[r], [&](OpBuilder &, Location) {
      Value col = h.ext64(h.mul(tig, h.c32(2)));
      for (int n = 0; n < Dv / 8; ++n) {
        Value packed = mma.packFloats(h.fmul(s.o[n][2 * r], inv), h.fmul(s.o[n][2 * r + 1], inv));
        Value off = h.add(row64, h.add(col, h.c64(8 * n)));
        h.store(packed, h.gep(p.o, h.i16(), off), 4);
      }
      scf::IfOp::create(h.b, h.loc, h.eq(tig, h.c32(0)), [&](OpBuilder &, Location) {
        Value lOff = h.add(h.mul(h.ext64(batch), p.lses[0]),
                           h.add(h.mul(h.ext64(tok[r]), p.lses[1]), h.mul(h.ext64(head[r]), p.lses[2])));
        h.store(lse, h.gep(p.lse, h.f32(), lOff), 4);
        scf::YieldOp::create(h.b, h.loc);
      });
      scf::YieldOp::create(h.b, h.loc);
    });
  }
}

LogicalResult ForwardKernelBuilder::build() {
  OpBuilder &b = h.b;
  Operation *gpuModule = b.getInsertionBlock()->getParentOp();
  if (!isa<gpu::GPUModuleOp>(gpuModule))
    return emitError(h.loc, "buildForwardKernel must be called inside a gpu.module");
  if (W <= 0 || TQ <= 0 || C <= 0 || TQ * G > W * 16 || C % 16 != 0)
    return emitError(h.loc, "incomplete or inconsistent tile configuration: ") << spec.str();
  declareSharedMemory(h, gpuModule);

  // K/V chunks are swizzled panels (stageChunk). Q: swizzled panels for wgmma,
  // every tile 1024-byte aligned (Q is W * 16 rows, C a multiple of 16); padded
  // rows for mma.sync's ldmatrix (staged once; the panels after it stay
  // 128-byte aligned: W * 16 * (Dk + 8) * 2 bytes with Dk a multiple of 64).
  const int pad = warpgroupMma() ? 0 : 8;
  qPitch = Dk + pad;
  // Warp specialisation keeps two Q tiles (the next tile's is staged while
  // this one is computed).
  qBase = 0, kBase = (specialised ? 2 : 1) * W * 16 * qPitch, bufElems = C * (Dk + Dv);
  barrierBase = 2 * (kBase + stages * bufElems);
  unionBase = specialised ? barrierBase + 16 * (stages + 2) : barrierBase;
  const int threads = W * 32 + (specialised ? producerThreads : 0);

  Block &entry = *createKernelFunction(h, name, 7, 18, 2, threads);
  // As many CTAs an SM as their shared memory allows, where that leaves ptxas
  // 128 registers a thread or more: a few more registers (Dk = 192 wgmma: 133;
  // the [main] selected union kernel: 130) would cost a CTA.
  if (int ctas = forwardMinCtasPerSm(spec))
    entry.getParentOp()->setAttr("nvvm.minctasm", h.b.getI32IntegerAttr(ctas));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&entry);

  auto args = entry.getArguments();
  p.q = args[0], p.k = args[1], p.v = args[2], p.idx = args[3], p.o = args[4], p.lse = args[5];
  p.tokenDone = args[6];
  Value *strideSets[6] = {p.qs, p.ks, p.vs, p.idxs, p.os, p.lses};
  for (int t = 0; t < 6; ++t)
    for (int d = 0; d < 3; ++d) strideSets[t][d] = args[7 + 3 * t + d];
  p.seqLen = args[25], p.kvLen = args[26];

  ids = ThreadIds::read(h);
  producerIds = ids;
  producerIds.tid = h.sub(ids.tid, h.c32(W * 32));
  group = ids.group, tig = ids.tig;
  Value warp = ids.warp;
  kvHead = h.blockIdY();
  batch = h.blockIdZ();
  smem = sharedMemoryBase(h, gpuModule);
  qTileBytes = h.c32(2 * qBase);

  SoftmaxState init;
  Value negInf = h.cf(-std::numeric_limits<float>::infinity()), zero = h.cf(0.0f);
  init.m[0] = init.m[1] = negInf;
  init.l[0] = init.l[1] = zero;
  init.o.assign(Dv / 8, Frag4{zero, zero, zero, zero});

  if (specialised) {
    // Thread 0 sets up the barriers: the ring's (`full`: the producer's lanes,
    // `empty`: one arrival a consumer warp) and the two Q tiles' (the same).
    scf::IfOp::create(h.b, h.loc, h.eq(ids.tid, h.c32(0)), [&](OpBuilder &, Location) {
      for (int i = 0; i < stages; ++i) {
        ringBarrier(h.c32(i), /*full=*/true).init(producerThreads);
        ringBarrier(h.c32(i), /*full=*/false).init(W);
      }
      for (int i = 0; i < 2; ++i) {
        queryBarrier(h.c32(i), /*full=*/true).init(unionSchedule() ? 2 * producerThreads : producerThreads);
        queryBarrier(h.c32(i), /*full=*/false).init(W);
      }
      scf::YieldOp::create(h.b, h.loc);
    });
    h.barrier();
    // The CTAs of the last tokens (the most keys, compressed) start first.
    Value cta = h.sub(h.sub(h.gridDimX(), h.c32(1)), h.blockIdX());
    Value firstTile = h.mul(cta, h.c32(forwardTilesPerCta(spec)));
    scf::IfOp::create(
        h.b, h.loc, h.ge(warp, h.c32(W)),
        [&](OpBuilder &, Location) {
          h.inlineAsm({}, {}, fmt::format("setmaxnreg.dec.sync.aligned.u32 {};", producerRegs), "");
          produceTiles(firstTile);
          scf::YieldOp::create(h.b, h.loc);
        },
        [&](OpBuilder &, Location) {
          h.inlineAsm({}, {}, fmt::format("setmaxnreg.inc.sync.aligned.u32 {};", consumerRegs), "");
          consumeTiles(firstTile, init);
          scf::YieldOp::create(h.b, h.loc);
        });
    gpu::ReturnOp::create(b, h.loc);
    return success();
  }

  setTile(h.mul(h.blockIdX(), h.c32(TQ)));
  // The selected branch's second kernel of the two-kernel schedule computes
  // only the CTAs the first left (a uniform branch: the CTA returns at once).
  if (spec.branch == Branch::Selected) {
    scf::IfOp::create(h.b, h.loc, h.bnot(handOver().allDone(t0, TQ)), [&](OpBuilder &, Location) {
      buildTile(init);
      scf::YieldOp::create(h.b, h.loc);
    });
  } else {
    buildTile(init);
  }
  gpu::ReturnOp::create(b, h.loc);
  return success();
}

void ForwardKernelBuilder::buildTile(const SoftmaxState &init) {
  // Stage the CTA's query rows once (as core matrices for wgmma).
  if (warpgroupMma()) {
    stageSwizzledPanels(h, ids, W * 32, smem, h.c32(qBase), W * 16, Dk, p.q, queryRows());
    fenceAsyncProxy(h);
  } else {
    stageRows(h.c32(qBase), qPitch, W * 16, Dk, p.q, queryRows());
  }

  // The chunks the CTA walks: the branch's key range, or with the union
  // schedule the chunks of the distinct blocks its tokens selected.
  if (unionSchedule()) {
    const int chunksPerBlock = spec.slcBlock / C;
    blockUnion = std::make_unique<SelectedBlockUnion>(h, ids, W * 32, smem, h.c32(unionBase), spec, TQ);
    blockUnion->build(BranchKeys::IndexInput{p.idx, {p.idxs[0], p.idxs[1], p.idxs[2]}}, batch, kvHead, t0,
                      p.seqLen, p.kvLen);
    numChunks = h.mul(blockUnion->count(), h.c32(chunksPerBlock));
  }
  storeOutputs(walkChunks(init));
}

} // namespace

LogicalResult buildForwardKernel(OpBuilder &builder, Location loc, const KernelSpec &spec, StringRef name) {
  return ForwardKernelBuilder(builder, loc, spec, name).build();
}

} // namespace nsajit::tpl
