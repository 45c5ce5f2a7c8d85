#include "TopNSelection.h"

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"
#include "WarpMma.h"
#include "WarpgroupMma.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

using namespace mlir;

namespace nsajit::tpl {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
// Scores are probabilities (>= 0) or +inf for forced blocks; empty slots of
// the running list hold kEmpty, window blocks a token cannot see kTaken (below
// every list entry, so never selected).
constexpr float kEmpty = -1.0f;
// A bit search holds up to this many candidate keys per lane in registers (N + a window's blocks).
constexpr int kSearchRegisterKeys = 24;
constexpr float kTaken = -2.0f;

// Row R of the tile is query head R % G of token R / G of the CTA. mma.sync:
// warp w owns rows 16w..16w+15 (one mma M tile); wgmma (S^T): warpgroup g owns
// rows 64g..64g+63 as its columns. The selection of token tl belongs to warp
// tl % W, so the merges need no CTA barrier.
class TopNKernelBuilder {
public:
  TopNKernelBuilder(OpBuilder &b, Location loc, const KernelSpec &spec, StringRef name)
      : name(name.str()), h(b, loc), mma(h, spec.dtype), wg(h, spec.dtype), spec(spec), Dk(spec.headDimQK), G(spec.group),
        W(spec.tile.warps), TPC(spec.tile.tokensPerCta), C(spec.tile.kvChunk), N(spec.slcCount),
        a(spec.slcBlock / spec.cmpStride), bb(spec.cmpBlock / spec.cmpStride), win(topNWindow(spec)) {}

  LogicalResult build();

private:
  Value offset(Value base[3], Value bIdx, Value row, Value head) {
    // (The row term last: the rest is loop-invariant in the stagings.)
    return h.add(h.add(h.mul(h.ext64(bIdx), base[0]), h.mul(h.ext64(head), base[2])), h.mul(h.ext64(row), base[1]));
  }
  Value at(int byteOff, Type t, Value i) { return h.gep(h.gep(smem, h.b.getI8Type(), h.c32(byteOff)), t, i); }
  Value ldF(int off, Value i) { return h.load(h.f32(), at(off, h.f32(), i), 4); }
  Value ldI(int off, Value i) { return h.load(h.i32(), at(off, h.i32(), i), 4); }
  void stF(int off, Value i, Value v) { h.store(v, at(off, h.f32(), i), 4); }
  void stI(int off, Value i, Value v) { h.store(v, at(off, h.i32(), i), 4); }
  // Order-preserving keys of scores (unsigned: a higher score has a higher
  // key; -2 < -1 < 0 < ... < +inf), in the IR and for constants.
  Value scoreKey(Value f) {
    Value bits = arith::BitcastOp::create(h.b, h.loc, h.i32(), f);
    Value flip = h.select(h.lt(bits, h.c32(0)), h.c32(-1), h.c32(std::numeric_limits<int>::min()));
    return arith::XOrIOp::create(h.b, h.loc, bits, flip);
  }
  static int keyOf(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    return static_cast<int>(bits & 0x80000000u ? ~bits : bits ^ 0x80000000u);
  }
  // Compressed tokens visible to token t: i*d + l - 1 <= t, i < kvLen.
  Value visibleCompressed(Value t) {
    Value sees = h.ge(t, h.c32(spec.cmpBlock - 1));
    Value n = h.add(h.divs(h.maxs(h.sub(t, h.c32(spec.cmpBlock - 1)), h.c32(0)), h.c32(spec.cmpStride)), h.c32(1));
    return h.select(sees, h.mins(n, kvLen), h.c32(0));
  }
  Value rowToken(Value row) { return h.add(t0, h.divs(row, h.c32(G))); }
  // lse log2 e of a query row; +inf where the row is past the tile or the
  // sequence, or sees no compressed token (its p are then 0).
  Value rowLse2(Value row) {
    Value ok = rowValid(row);
    Value tok = h.select(ok, rowToken(row), t0);
    Value lse = h.load(h.f32(), h.gep(lsePtr, h.f32(), offset(lseS, batch, tok, h.select(ok, headOf(row), kvHead))), 4);
    Value finite = h.band(ok, h.fgt(lse, h.cf(-std::numeric_limits<float>::infinity())));
    return h.select(finite, h.fmul(lse, h.cf(kLog2e)), h.cf(std::numeric_limits<float>::infinity()));
  }
  Value rowValid(Value row) { return h.band(h.lt(row, h.c32(TPC * G)), h.lt(rowToken(row), seqLen)); }
  Value headOf(Value row) { return h.add(h.mul(kvHead, h.c32(G)), h.rems(row, h.c32(G))); }

  void scoreWindow(Value w, Value J0, Value nBlocks, Value totalChunks, Value keysEnd);
  // The first key of chunk g of the stream of compressed keys (see scoreWindow).
  Value chunkKey(Value g) {
    return h.sub(h.mul(g, h.c32(C)), h.c32(a - 1));
  }
  // Rows of the chunk from keyStart: keys below 0 or from keysEnd are zeros.
  RowOffsetFn keyRows(Value keyStart, Value keysEnd) {
    return [this, keyStart, keysEnd](Value row) -> std::pair<Value, Value> {
      Value key = h.add(keyStart, row);
      return {offset(kcS, batch, key, kvHead), ucmp(arith::CmpIPredicate::ult, key, keysEnd)};
    };
  }
  // wgmma: chunk g's buffer (two, by parity), and the copy of chunk g into it
  // (none past the last chunk; the group is committed either way).
  Value keyBuffer(Value g) { return h.add(h.c32(kBase), h.mul(h.rems(g, h.c32(2)), h.c32(C * Dk))); }
  void stageKeyChunk(Value g, Value totalChunks, Value keysEnd) {
    ifThen(h.lt(g, totalChunks), [&] {
      stageSwizzledPanels(h, ids, W * 32, smem, keyBuffer(g), C, Dk, kcPtr, keyRows(chunkKey(g), keysEnd),
                          /*wait=*/false, /*commit=*/false);
    });
    commitStaged(h);
  }
  // The scores of a staged chunk: this warp's 16 rows x C keys.
  std::vector<Frag4> chunkScoresSync();
  // sm_90a with whole warpgroups and 64-key chunks (topNUsesWarpgroupMma):
  // S^T = K Q^T by wgmma on swizzled tiles, the next key chunk copied while one
  // is scored; else S = Q K^T by mma.sync on padded rows, one chunk at a time.
  bool warpgroupMma() const { return topNUsesWarpgroupMma(spec); }
  void storeTokenScores(Value keyStart, Value iBase, Value iHi, const std::vector<Frag4> &s);
  // The wgmma path: keys are the rows (16 a warp, the chunk's 64 shared by the
  // warpgroups), the warpgroup's 64 query rows the columns, so a token's heads
  // sit in one thread and its quad: few shuffles per score.
  struct TokenSlot {
    std::vector<std::pair<int, int>> cols; // (n-tile j, element e) of the thread's columns of this token
    std::vector<int> shuffleMasks;         // lanes of the quad holding the token's other columns
    Value token, nvis, writes;             // CTA-local token; its visible compressed tokens; this lane stores it
  };
  void prepareTransposedScores();
  void scoreChunkTransposed(Value kElemBase, Value keyStart, Value iBase, Value iHi);
  void mergeWindow(Value J0, Value nBlocks);
  void carryWindowTail();
  // Candidate c of a merge (list slots, then survivors): its key (0 past the end) and block index.
  using CandidateFn = std::function<std::pair<Value, Value>(Value c)>;
  void mergeByRank(Value topRow, Value tl, const CandidateFn &candidate);
  void mergeBySearch(Value topRow, Value tl, Value m, const CandidateFn &candidate);
  Value popc(Value x) { return LLVM::CtPopOp::create(h.b, h.loc, x).getResult(); }
  Value ballot(Value pred) {
    return NVVM::VoteSyncOp::create(h.b, h.loc, h.i32(), h.c32(-1), pred, NVVM::VoteSyncKind::ballot).getResult();
  }
  Value ucmp(arith::CmpIPredicate p, Value a, Value b) { return arith::CmpIOp::create(h.b, h.loc, p, a, b); }
  Value shflIdx(Value v, Value lane) {
    return NVVM::ShflOp::create(h.b, h.loc, v.getType(), h.c32(-1), v, lane, h.c32(31),
                                NVVM::ShflKindAttr::get(h.b.getContext(), NVVM::ShflKind::idx), UnitAttr())
        .getResult();
  }
  Value shflIdx(Value v, int lane) { return shflIdx(v, h.c32(lane)); }
  void writeSelection();
  void forThreads(Value count, const std::function<void(Value)> &body) {
    scf::ForOp::create(h.b, h.loc, ids.tid, count, h.c32(W * 32), ValueRange{},
                       [&](OpBuilder &, Location, Value i, ValueRange) {
                         body(i);
                         scf::YieldOp::create(h.b, h.loc);
                       });
  }
  // The tokens whose selection this warp makes (tl = warp, warp + W, ...),
  // skipping those past the end of the sequence. Warp-uniform: no CTA barrier inside.
  void forOwnTokens(const std::function<void(Value tl, Value t)> &body) {
    scf::ForOp::create(h.b, h.loc, ids.warp, h.c32(TPC), h.c32(W), ValueRange{},
                       [&](OpBuilder &, Location, Value tl, ValueRange) {
                         Value t = h.add(t0, tl);
                         scf::IfOp::create(h.b, h.loc, h.lt(t, seqLen), [&](OpBuilder &, Location) {
                           body(tl, t);
                           scf::YieldOp::create(h.b, h.loc);
                         });
                         scf::YieldOp::create(h.b, h.loc);
                       });
  }
  void ifThen(Value cond, const std::function<void()> &body) {
    scf::IfOp::create(h.b, h.loc, cond, [&](OpBuilder &, Location) {
      body();
      scf::YieldOp::create(h.b, h.loc);
    });
  }

  std::string name;
  IRBuilderHelpers h;
  WarpMma mma;
  WarpgroupMma wg;
  const KernelSpec &spec;
  const int Dk, G, W, TPC, C, N;
  // eq. 9's l' / d and l / d: compressed tokens a selection block strides over and a compressed
  // block spans (bb - 1 of them are shared by two windows' block sums).
  const int a, bb;
  TopNWindow win;
  // Shared memory: Q rows and the key chunk (two with wgmma; in 16-bit elements), then per-token
  // arrays (byte offsets): compressed-token scores [TPC][cmpCapacity], block
  // scores [TPC][blocks] (in a merge: the survivors' indices and keys), running
  // list and next list [TPC][N] (key, index), the list's worst key [TPC].
  int qBase = 0, kBase = 0, cmpOff = 0, blkOff = 0, topKOff = 0, topIOff = 0, newKOff = 0, newIOff = 0, thrOff = 0;
  ThreadIds ids;
  Value laneBelow; // lanes below this one, as a ballot mask
  Value smem, batch, kvHead, t0, seqLen, kvLen, lse2[2], nvisRow[2];
  // wgmma path: -lse2 of the thread's 16 columns [j][e], and its token slots.
  Value negLse2Col[8][2];
  std::vector<TokenSlot> slots;
  Value warpgroupRow0;
  Value qPtr, kcPtr, lsePtr, idxPtr;
  Value qS[3], kcS[3], lseS[3], idxS[3];
};

// Phase A and B of a window: compressed-token scores summed over each token's
// group, then the window's selection-block scores (eq. 9) with forced blocks
// at +inf. One staged chunk of compressed keys serves every token of the CTA.
//
// The chunks of compressed keys form one stream across the windows: chunk g
// holds keys g C - (a - 1) .., so window w scores exactly its chunks w cpw ..
// (a window's a x blocks keys are whole chunks), and the b - 1 keys two windows
// share are carried, not scored twice. With wgmma the copy of chunk g + 1 is
// issued while chunk g is scored, also across a window's end: the next window's
// first chunk arrives during the merge. (Before, the paper's windows of 257 keys
// took five 64-key chunks, the last holding one key, and restarted the copies.)
void TopNKernelBuilder::scoreWindow(Value w, Value J0, Value nBlocks, Value totalChunks, Value keysEnd) {
  const int carried = bb - 1, chunksPerWindow = a * win.blocks / C;
  Value zero = h.cf(0.0f);
  // Position 0 of the window's scores is key iBase; positions 0 .. carried - 1
  // hold the previous window's last keys (zeros before the first window).
  Value iBase = h.sub(h.mul(J0, h.c32(a)), h.c32(win.reach));
  Value iCount = h.add(h.mul(h.sub(nBlocks, h.c32(1)), h.c32(a)), h.c32(win.reach + 1));
  // The keys the CTA's last token sees; earlier tokens mask theirs per row.
  Value iHi = h.mins(h.add(iBase, iCount), keysEnd);
  // The window's keys past the last visible one are zeros.
  Value hiStart = h.maxs(h.sub(iHi, iBase), h.c32(carried));
  forOwnTokens([&](Value tl, Value) {
    Value row = h.mul(tl, h.c32(win.cmpCapacity));
    scf::ForOp::create(h.b, h.loc, h.add(hiStart, ids.lane), iCount, h.c32(32), ValueRange{},
                       [&](OpBuilder &, Location, Value i, ValueRange) {
                         stF(cmpOff, h.add(row, i), zero);
                         scf::YieldOp::create(h.b, h.loc);
                       });
  });
  Value gBegin = h.mul(w, h.c32(chunksPerWindow));
  Value gEnd = h.mins(h.add(gBegin, h.c32(chunksPerWindow)), totalChunks);
  if (warpgroupMma()) {
    // wgmma reads through the async proxy, behind a fence that waits for copies
    // in flight, so the next copies start after the barrier (the buffer they
    // fill was read before it).
    scf::ForOp::create(h.b, h.loc, gBegin, gEnd, h.c32(1), ValueRange{}, [&](OpBuilder &, Location, Value g,
                                                                             ValueRange) {
      waitStaged(h);
      fenceAsyncProxy(h);
      h.barrier();
      stageKeyChunk(h.add(g, h.c32(1)), totalChunks, keysEnd);
      scoreChunkTransposed(keyBuffer(g), chunkKey(g), iBase, iHi);
      scf::YieldOp::create(h.b, h.loc);
    });
  } else {
    scf::ForOp::create(h.b, h.loc, gBegin, gEnd, h.c32(1), ValueRange{}, [&](OpBuilder &, Location, Value g,
                                                                             ValueRange) {
      Value keyStart = chunkKey(g);
      h.barrier();
      stageRows(h, ids, W * 32, smem, h.c32(kBase), Dk + 8, C, Dk, kcPtr, keyRows(keyStart, keysEnd));
      h.barrier();
      storeTokenScores(keyStart, iBase, iHi, chunkScoresSync());
      scf::YieldOp::create(h.b, h.loc);
    });
  }
  h.barrier();

  // Block j sums compressed tokens a*j - s, s = 0..reach, weighted by the
  // number of (m, n) in [0, a) x [0, b) with m + n = s (eq. 9). Each warp scores
  // the blocks of the tokens it merges, so only the warp synchronises after.
  auto weight = [&](int s) { return std::min(s, a - 1) - std::max(0, s - (bb - 1)) + 1; };
  forOwnTokens([&](Value tl, Value t) {
    Value jt = h.divs(t, h.c32(spec.slcBlock));
    Value cmpRow = h.mul(tl, h.c32(win.cmpCapacity)), blkRow = h.mul(tl, h.c32(win.blocks));
    scf::ForOp::create(h.b, h.loc, ids.lane, nBlocks, h.c32(32), ValueRange{}, [&](OpBuilder &, Location, Value jj,
                                                                                  ValueRange) {
      Value j = h.add(J0, jj);
      Value first = h.add(cmpRow, h.add(h.mul(jj, h.c32(a)), h.c32(win.reach))); // token a*j in the window
      Value sum = zero;
      if (win.reach < 16) {
        for (int s = 0; s <= win.reach; ++s)
          sum = h.fadd(sum, h.fmul(h.cf(static_cast<float>(weight(s))), ldF(cmpOff, h.sub(first, h.c32(s)))));
      } else {
        sum = scf::ForOp::create(
                  h.b, h.loc, h.c32(0), h.c32(win.reach + 1), h.c32(1), ValueRange{zero},
                  [&](OpBuilder &, Location, Value s, ValueRange acc) {
                    Value w = h.add(h.sub(h.mins(s, h.c32(a - 1)), h.maxs(h.c32(0), h.sub(s, h.c32(bb - 1)))), h.c32(1));
                    Value wf = arith::SIToFPOp::create(h.b, h.loc, h.f32(), w);
                    scf::YieldOp::create(h.b, h.loc, ValueRange{h.fadd(acc[0], h.fmul(wf, ldF(cmpOff, h.sub(first, s))))});
                  })
                  .getResult(0);
      }
      // The window spans the blocks of the CTA's last token; later blocks are
      // invisible to earlier tokens.
      Value forced = h.bor(h.lt(j, h.c32(spec.slcInitial)), h.gt(j, h.sub(jt, h.c32(spec.slcLocal))));
      Value score = h.select(forced, h.cf(std::numeric_limits<float>::infinity()), sum);
      stF(blkOff, h.add(blkRow, jj), h.select(h.le(j, jt), score, h.cf(kTaken)));
      scf::YieldOp::create(h.b, h.loc);
    });
  });
  h.syncWarp();
}

// The next window's first b - 1 compressed-token scores are this window's
// from position a x blocks on. After the merge, which keeps its survivors'
// indices in the first `blocks` positions (below a x blocks).
void TopNKernelBuilder::carryWindowTail() {
  const int carried = bb - 1;
  if (carried == 0) return;
  forOwnTokens([&](Value tl, Value) {
    Value cmpRow = h.mul(tl, h.c32(win.cmpCapacity));
    scf::ForOp::create(h.b, h.loc, ids.lane, h.c32(carried), h.c32(32), ValueRange{},
                       [&](OpBuilder &, Location, Value i, ValueRange) {
                         stF(cmpOff, h.add(cmpRow, i), ldF(cmpOff, h.add(cmpRow, h.add(i, h.c32(a * win.blocks)))));
                         scf::YieldOp::create(h.b, h.loc);
                       });
  });
  h.syncWarp();
}

std::vector<Frag4> TopNKernelBuilder::chunkScoresSync() {
  const int kPitch = Dk + 8, qPitch = Dk + 8;
  Value zero = h.cf(0.0f);
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
  return s;
}

// The thread's columns are 8j + 2 tig + e (j < 8, e < 2) of its warpgroup's 64
// query rows; a token's G columns are G / 8 n-tiles of the quad (G >= 8), half
// an n-tile (G = 4: two lanes), a column pair (G = 2) or one column.
void TopNKernelBuilder::prepareTransposedScores() {
  warpgroupRow0 = h.mul(h.divs(ids.warp, h.c32(4)), h.c32(64));
  std::vector<std::vector<std::pair<int, int>>> groups;
  for (int j = 0; j < 8; ++j)
    for (int e = 0; e < 2; ++e) {
      const int col = 8 * j + e; // a token never straddles a column pair (G even) nor, for G >= 8, an n-tile
      const bool newToken = G == 1 || (G <= 4 ? e == 0 : col % G == 0);
      if (newToken) groups.emplace_back();
      groups.back().emplace_back(j, e);
    }
  for (auto &cols : groups) {
    TokenSlot slot;
    slot.cols = cols;
    if (G >= 8) slot.shuffleMasks = {1, 2};
    else if (G == 4) slot.shuffleMasks = {1};
    auto [j, e] = cols.front();
    Value firstRow = h.add(warpgroupRow0, h.add(h.c32(8 * j + e), G >= 8 ? h.c32(0) : h.mul(ids.tig, h.c32(2))));
    slot.token = h.divs(firstRow, h.c32(G));
    // One lane of those holding the token stores it (spread over the quad).
    const int u = static_cast<int>(slots.size());
    slot.writes = G >= 8 ? h.eq(ids.tig, h.c32(u % 4)) : G == 4 ? h.eq(h.rems(ids.tig, h.c32(2)), h.c32(0)) : h.cbool(true);
    slot.writes = h.band(slot.writes, h.lt(slot.token, h.c32(TPC)));
    Value t = h.add(t0, slot.token);
    slot.nvis = h.select(h.lt(t, seqLen), visibleCompressed(t), h.c32(0));
    slots.push_back(slot);
  }
  for (int j = 0; j < 8; ++j)
    for (int e = 0; e < 2; ++e) {
      Value row = h.add(warpgroupRow0, h.add(h.c32(8 * j + e), h.mul(ids.tig, h.c32(2))));
      negLse2Col[j][e] = h.fsub(h.cf(0.0f), rowLse2(row));
    }
}

// S^T (64 keys x the warpgroup's 64 query rows) = K Q^T; p = 2^(s scale log2e -
// lse2) summed over each token's heads (in the thread, then its quad, a fixed
// order) and stored once per (token, key): deterministic.
void TopNKernelBuilder::scoreChunkTransposed(Value kElemBase, Value keyStart, Value iBase, Value iHi) {
  const float scaleLog2 = spec.effectiveScale() * kLog2e;
  std::vector<Value> acc = wg.fence(std::vector<Value>(32, h.cf(0.0f)));
  acc = wg.issueProductABt(acc, smem, {h.mul(kElemBase, h.c32(2)), C}, h.c32(0),
                           {h.add(h.c32(2 * qBase), h.mul(warpgroupRow0, h.c32(128))), W * 16}, Dk);
  std::vector<Frag4> s = WarpgroupMma::tiles(wg.commitAndWait(acc));
  Value warpKey = h.add(h.mul(h.rems(ids.warp, h.c32(4)), h.c32(16)), ids.group);
  for (int r = 0; r < 2; ++r) {
    Value key = h.add(keyStart, h.add(warpKey, h.c32(8 * r)));
    Value inWindow = h.lt(key, iHi);
    for (const TokenSlot &slot : slots) {
      Value sum;
      for (auto [j, e] : slot.cols) {
        Value p = h.exp2(h.fma(s[j][2 * r + e], h.cf(scaleLog2), negLse2Col[j][e]));
        sum = sum ? h.fadd(sum, p) : p;
      }
      for (int mask : slot.shuffleMasks) sum = h.fadd(sum, h.shflXor(sum, mask));
      Value value = h.select(ucmp(arith::CmpIPredicate::ult, key, slot.nvis), sum, h.cf(0.0f));
      ifThen(h.band(slot.writes, inWindow), [&] {
        stF(cmpOff, h.add(h.mul(slot.token, h.c32(win.cmpCapacity)), h.sub(key, iBase)), value);
      });
    }
  }
}

// p = 2^(s scale log2e - lse2) per (row, key), summed over the G rows of each
// token in a fixed order (shuffles, then for G = 32 the even warp's half plus
// the odd warp's half), and stored once per (token, key): deterministic.
void TopNKernelBuilder::storeTokenScores(Value keyStart, Value iBase, Value iHi, const std::vector<Frag4> &s) {
  const float scaleLog2 = spec.effectiveScale() * kLog2e;
  Value zero = h.cf(0.0f);
  auto keyOf = [&](int n, int col) { return h.add(keyStart, h.add(h.c32(8 * n + col), h.mul(ids.tig, h.c32(2)))); };
  auto store = [&](Value tl, Value key, Value v, bool accumulate) {
    ifThen(h.lt(key, iHi), [&] {
      Value at = h.add(h.mul(tl, h.c32(win.cmpCapacity)), h.sub(key, iBase));
      stF(cmpOff, at, accumulate ? h.fadd(ldF(cmpOff, at), v) : v);
    });
  };
  // sums[n][col][r]: row half r (rows group and group + 8 of the warp's tile).
  std::vector<std::array<std::array<Value, 2>, 2>> sums(C / 8);
  for (int n = 0; n < C / 8; ++n)
    for (int col = 0; col < 2; ++col) {
      Value key = keyOf(n, col);
      Value p[2];
      for (int r = 0; r < 2; ++r) {
        Value pr = h.exp2(h.fsub(h.fmul(s[n][2 * r + col], h.cf(scaleLog2)), lse2[r]));
        p[r] = h.select(ucmp(arith::CmpIPredicate::ult, key, nvisRow[r]), pr, zero);
      }
      if (G >= 16) {
        // The warp's 16 rows are heads of one token: add both halves, then the 8 groups.
        Value sum = h.fadd(p[0], p[1]);
        for (int mask : {4, 8, 16}) sum = h.fadd(sum, h.shflXor(sum, mask));
        sums[n][col] = {sum, sum};
      } else {
        // A token's G rows are G consecutive groups of one half.
        for (int r = 0; r < 2; ++r) {
          for (int m = 1; m < G; m *= 2) p[r] = h.fadd(p[r], h.shflXor(p[r], 4 * m));
          sums[n][col][r] = p[r];
        }
      }
    }
  auto storeAll = [&](Value tl, int r, bool accumulate) {
    for (int n = 0; n < C / 8; ++n)
      for (int col = 0; col < 2; ++col) store(tl, keyOf(n, col), sums[n][col][r], accumulate);
  };
  if (G >= 16) {
    Value tl = h.divs(h.mul(ids.warp, h.c32(16)), h.c32(G));
    Value writer = h.band(h.eq(ids.group, h.c32(0)), h.lt(tl, h.c32(TPC)));
    if (G == 16) {
      ifThen(writer, [&] { storeAll(tl, 0, false); });
    } else {
      Value odd = h.eq(h.rems(ids.warp, h.c32(2)), h.c32(1));
      ifThen(h.band(writer, h.eq(odd, h.cbool(false))), [&] { storeAll(tl, 0, false); });
      h.barrier();
      ifThen(h.band(writer, odd), [&] { storeAll(tl, 0, true); });
    }
    return;
  }
  for (int r = 0; r < 2; ++r) {
    Value row = h.add(h.mul(ids.warp, h.c32(16)), h.add(ids.group, h.c32(8 * r)));
    Value tl = h.divs(row, h.c32(G));
    Value writer = h.band(h.eq(h.rems(ids.group, h.c32(G)), h.c32(0)), h.lt(tl, h.c32(TPC)));
    ifThen(writer, [&] { storeAll(tl, r, false); });
  }
}

// Phase C: each warp merges the window into the running top-n of its tokens
// (no CTA barrier). Scores are compared as order-preserving 32-bit keys (a
// higher score has a higher key), and ties go to the lower block index: the
// list is kept in ascending block order (empty slots, index -1, first) and the
// window's blocks follow it, so candidate order is index order.
//   1. Survivors: the window's blocks whose key beats the list's worst (a block
//      equal to it loses the tie), compacted in block order by ballots.
//   2. The n best of list + survivors, in candidate order (so again ascending):
//      by rank when they fit a warp, else by a bit-by-bit search of the n-th key.
void TopNKernelBuilder::mergeWindow(Value J0, Value nBlocks) {
  auto below = [&](Value bal) { return popc(h.band(bal, laneBelow)); };
  forOwnTokens([&](Value tl, Value) {
    Value topRow = h.mul(tl, h.c32(N)), blkRow = h.mul(tl, h.c32(win.blocks)), cmpRow = h.mul(tl, h.c32(win.cmpCapacity));
    Value bar = ldI(thrOff, tl);
    // 1. Survivors overwrite the token's block scores (keys) and compressed scores (block indices)
    // in place: a survivor's slot is at most its block's, and a warp's reads precede its writes.
    auto filter = scf::ForOp::create(
        h.b, h.loc, h.c32(0), nBlocks, h.c32(32), ValueRange{h.c32(0)},
        [&](OpBuilder &, Location, Value base, ValueRange it) {
          Value x = h.add(base, ids.lane);
          Value key = scoreKey(ldF(blkOff, h.add(blkRow, h.mins(x, h.c32(win.blocks - 1)))));
          Value survives = h.band(h.lt(x, nBlocks), ucmp(arith::CmpIPredicate::ugt, key, bar));
          Value bal = ballot(survives);
          h.syncWarp();
          ifThen(survives, [&] {
            Value slot = h.add(it[0], below(bal));
            stI(blkOff, h.add(blkRow, slot), key);
            stI(cmpOff, h.add(cmpRow, slot), h.add(J0, x));
          });
          scf::YieldOp::create(h.b, h.loc, ValueRange{h.add(it[0], popc(bal))});
        });
    Value survivors = filter.getResult(0);
    ifThen(h.gt(survivors, h.c32(0)), [&] {
      h.syncWarp();
      Value m = h.add(h.c32(N), survivors);
      // Candidate c: list slot c, then survivor c - n; key 0 (below every key) past m.
      auto candidate = [&](Value c) -> std::pair<Value, Value> {
        Value inList = h.lt(c, h.c32(N));
        Value li = h.add(topRow, h.select(inList, c, h.c32(0)));
        Value si = h.mins(h.maxs(h.sub(c, h.c32(N)), h.c32(0)), h.c32(win.blocks - 1));
        Value key = h.select(inList, ldI(topKOff, li), ldI(blkOff, h.add(blkRow, si)));
        Value index = h.select(inList, ldI(topIOff, li), ldI(cmpOff, h.add(cmpRow, si)));
        return {h.select(h.lt(c, m), key, h.c32(0)), index};
      };
      auto search = [&] { mergeBySearch(topRow, tl, m, candidate); };
      if (N > 32) {
        search();
        return;
      }
      scf::IfOp::create(
          h.b, h.loc, h.le(m, h.c32(32)),
          [&](OpBuilder &, Location) {
            mergeByRank(topRow, tl, candidate);
            scf::YieldOp::create(h.b, h.loc);
          },
          [&](OpBuilder &, Location) {
            search();
            scf::YieldOp::create(h.b, h.loc);
          });
    });
  });
}

// At most 32 candidates (the usual case past a token's first window): lane c
// holds candidate c, its rank is the number that beat it (a higher key, or the
// same key earlier), and the n best are compacted in candidate order.
void TopNKernelBuilder::mergeByRank(Value topRow, Value tl, const CandidateFn &candidate) {
  auto [key, index] = candidate(ids.lane);
  Value rank = h.c32(0);
  for (int j = 0; j < 32; ++j) {
    Value other = shflIdx(key, j);
    Value beats = h.bor(ucmp(arith::CmpIPredicate::ugt, other, key), h.band(h.eq(other, key), h.lt(h.c32(j), ids.lane)));
    rank = h.add(rank, h.select(beats, h.c32(1), h.c32(0)));
  }
  Value take = h.band(h.ne(key, h.c32(0)), h.lt(rank, h.c32(N)));
  Value takeBal = ballot(take);
  // The n-th best key is the next window's bar.
  Value last = ballot(h.band(take, h.eq(rank, h.c32(N - 1))));
  Value bar = shflIdx(key, LLVM::CountTrailingZerosOp::create(h.b, h.loc, last, false).getResult());
  h.syncWarp();
  ifThen(take, [&] {
    Value slot = h.add(topRow, popc(h.band(takeBal, laneBelow)));
    stI(topKOff, slot, key);
    stI(topIOff, slot, index);
  });
  ifThen(h.eq(ids.lane, h.c32(0)), [&] { stI(thrOff, tl, bar); });
  h.syncWarp();
}

// More candidates (a token's first window): the n-th best key v, bit by bit from
// the top (the largest v with at least n keys >= v; a trial with exactly n ends
// it), then the keys above v and the first of those equal to v, in candidate order.
void TopNKernelBuilder::mergeBySearch(Value topRow, Value tl, Value m, const CandidateFn &candidate) {
  // The search's counts read the candidates' keys from registers (a lane's K
  // candidates, a warp sum by redux) where they fit, else from shared memory.
  const int K = (N + win.blocks + 31) / 32;
  std::vector<Value> keys;
  if (K <= kSearchRegisterKeys)
    for (int k = 0; k < K; ++k) keys.push_back(candidate(h.add(ids.lane, h.c32(32 * k))).first);
  auto countWhere = [&](Value upper, const std::function<Value(Value)> &pred) -> Value {
    if (!keys.empty()) {
      auto ifOp = scf::IfOp::create(
          h.b, h.loc, h.gt(upper, h.c32(0)),
          [&](OpBuilder &, Location) {
            Value local = h.c32(0);
            for (Value key : keys) local = h.add(local, h.select(pred(key), h.c32(1), h.c32(0)));
            Value total = NVVM::ReduxOp::create(h.b, h.loc, h.i32(), local, NVVM::ReduxKind::ADD, h.c32(-1));
            scf::YieldOp::create(h.b, h.loc, ValueRange{total});
          },
          [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, ValueRange{h.c32(0)}); });
      return ifOp.getResult(0);
    }
    return scf::ForOp::create(h.b, h.loc, h.c32(0), upper, h.c32(32), ValueRange{h.c32(0)},
                              [&](OpBuilder &, Location, Value c0, ValueRange it) {
                                Value hit = pred(candidate(h.add(c0, ids.lane)).first);
                                scf::YieldOp::create(h.b, h.loc, ValueRange{h.add(it[0], popc(ballot(hit)))});
                              })
        .getResult(0);
  };
  auto search = scf::ForOp::create(
      h.b, h.loc, h.c32(0), h.c32(32), h.c32(1), ValueRange{h.c32(0), h.cbool(false)},
      [&](OpBuilder &, Location, Value i, ValueRange it) {
        Value v = it[0], done = it[1];
        Value trial = h.bor(v, h.shl(h.c32(1), h.sub(h.c32(31), i)));
        Value count = countWhere(h.select(done, h.c32(0), m),
                                 [&](Value key) { return ucmp(arith::CmpIPredicate::uge, key, trial); });
        Value accept = h.band(h.eq(done, h.cbool(false)), h.ge(count, h.c32(N)));
        Value exact = h.band(accept, h.eq(count, h.c32(N)));
        scf::YieldOp::create(h.b, h.loc, ValueRange{h.select(accept, trial, v), h.bor(done, exact)});
      });
  Value v = search.getResult(0);
  Value above = countWhere(m, [&](Value key) { return ucmp(arith::CmpIPredicate::ugt, key, v); });
  Value need = h.sub(h.c32(N), above);
  scf::ForOp::create(h.b, h.loc, h.c32(0), m, h.c32(32), ValueRange{h.c32(0), h.c32(0)},
                     [&](OpBuilder &, Location, Value c0, ValueRange it) {
                       auto [key, index] = candidate(h.add(c0, ids.lane));
                       Value equal = h.eq(key, v);
                       Value equalBal = ballot(equal);
                       Value take = h.bor(ucmp(arith::CmpIPredicate::ugt, key, v),
                                          h.band(equal, h.lt(h.add(it[0], popc(h.band(equalBal, laneBelow))), need)));
                       Value takeBal = ballot(take);
                       ifThen(take, [&] {
                         Value slot = h.add(topRow, h.add(it[1], popc(h.band(takeBal, laneBelow))));
                         stI(newKOff, slot, key);
                         stI(newIOff, slot, index);
                       });
                       scf::YieldOp::create(h.b, h.loc,
                                            ValueRange{h.add(it[0], popc(equalBal)), h.add(it[1], popc(takeBal))});
                     });
  h.syncWarp();
  scf::ForOp::create(h.b, h.loc, ids.lane, h.c32(N), h.c32(32), ValueRange{},
                     [&](OpBuilder &, Location, Value k, ValueRange) {
                       stI(topKOff, h.add(topRow, k), ldI(newKOff, h.add(topRow, k)));
                       stI(topIOff, h.add(topRow, k), ldI(newIOff, h.add(topRow, k)));
                       scf::YieldOp::create(h.b, h.loc);
                     });
  // A lower bound of the new list's worst key (exact unless the search ended early): survivors
  // must beat it, and a block equal to a listed key still loses the tie in the next merge.
  ifThen(h.eq(ids.lane, h.c32(0)), [&] { stI(thrOff, tl, v); });
  h.syncWarp();
}

// Phase D: each warp writes its tokens' lists sorted ascending (-1 last):
// slot k goes to its rank among the n slots (ties of -1 by slot).
void TopNKernelBuilder::writeSelection() {
  auto key = [&](Value v) { return h.select(h.lt(v, h.c32(0)), h.c32(std::numeric_limits<int>::max()), v); };
  forOwnTokens([&](Value tl, Value t) {
    Value topRow = h.mul(tl, h.c32(N));
    Value out = offset(idxS, batch, t, kvHead);
    scf::ForOp::create(h.b, h.loc, ids.lane, h.c32(N), h.c32(32), ValueRange{},
                       [&](OpBuilder &, Location, Value k, ValueRange) {
                         Value vk = ldI(topIOff, h.add(topRow, k));
                         Value kk = key(vk);
                         auto rank = scf::ForOp::create(
                             h.b, h.loc, h.c32(0), h.c32(N), h.c32(1), ValueRange{h.c32(0)},
                             [&](OpBuilder &, Location, Value j, ValueRange acc) {
                               Value kj = key(ldI(topIOff, h.add(topRow, j)));
                               Value before = h.bor(h.lt(kj, kk), h.band(h.eq(kj, kk), h.lt(j, k)));
                               scf::YieldOp::create(h.b, h.loc,
                                                    ValueRange{h.add(acc[0], h.select(before, h.c32(1), h.c32(0)))});
                             });
                         Value dst = h.add(out, h.ext64(rank.getResult(0)));
                         h.store(vk, h.gep(idxPtr, h.i32(), dst), 4);
                         scf::YieldOp::create(h.b, h.loc);
                       });
  });
}

LogicalResult TopNKernelBuilder::build() {
  OpBuilder &b = h.b;
  Operation *gpuModule = b.getInsertionBlock()->getParentOp();
  if (!isa<gpu::GPUModuleOp>(gpuModule))
    return emitError(h.loc, "buildTopNKernel must be called inside a gpu.module");
  if (TPC < 1 || W < 1 || W * 16 < TPC * G || C % 16 != 0)
    return emitError(h.loc, "inconsistent top-n tile: ") << spec.str();
  declareSharedMemory(h, gpuModule);
  const int pitch = Dk + (warpgroupMma() ? 0 : 8), row = pitch * 2;
  qBase = 0;
  kBase = W * 16 * pitch;
  cmpOff = (W * 16 + (warpgroupMma() ? 2 : 1) * C) * row;
  blkOff = cmpOff + 4 * TPC * win.cmpCapacity;
  topKOff = blkOff + 4 * TPC * win.blocks;
  topIOff = topKOff + 4 * TPC * N;
  newKOff = topIOff + 4 * TPC * N;
  newIOff = newKOff + 4 * TPC * N;
  thrOff = newIOff + 4 * TPC * N;

  Block &entry = *createKernelFunction(h, name, 4, 12, 2, W * 32);
  // Two CTAs an SM (the default tiles' shared memory is sized for it): at most
  // 128 registers a thread for 256 threads.
  entry.getParentOp()->setAttr("nvvm.minctasm", h.b.getI32IntegerAttr(2));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&entry);
  auto args = entry.getArguments();
  qPtr = args[0], kcPtr = args[1], lsePtr = args[2], idxPtr = args[3];
  Value *strideSets[4] = {qS, kcS, lseS, idxS};
  for (int t = 0; t < 4; ++t)
    for (int d = 0; d < 3; ++d) strideSets[t][d] = args[4 + 3 * t + d];
  seqLen = args[16], kvLen = args[17];

  ids = ThreadIds::read(h);
  laneBelow = h.sub(h.shl(h.c32(1), ids.lane), h.c32(1));
  t0 = h.mul(h.blockIdX(), h.c32(TPC));
  kvHead = h.blockIdY();
  batch = h.blockIdZ();
  smem = sharedMemoryBase(h, gpuModule);
  // The CTA's last token (a partial CTA at the end of the sequence has fewer).
  Value tLast = h.mins(h.add(t0, h.c32(TPC - 1)), h.sub(seqLen, h.c32(1)));

  // Query rows; rows past the CTA's tokens or the sequence are zeros.
  RowOffsetFn queryRow = [&](Value r) -> std::pair<Value, Value> {
    Value ok = rowValid(r);
    return {offset(qS, batch, h.select(ok, rowToken(r), t0), h.select(ok, headOf(r), kvHead)), ok};
  };
  if (warpgroupMma()) {
    stageSwizzledPanels(h, ids, W * 32, smem, h.c32(qBase), W * 16, Dk, qPtr, queryRow);
    fenceAsyncProxy(h);
  } else {
    stageRows(h, ids, W * 32, smem, h.c32(qBase), Dk + 8, W * 16, Dk, qPtr, queryRow);
  }
  if (warpgroupMma()) {
    prepareTransposedScores();
  } else {
    for (int r = 0; r < 2; ++r) {
      Value rr = h.add(h.mul(ids.warp, h.c32(16)), h.add(ids.group, h.c32(8 * r)));
      Value ok = rowValid(rr);
      lse2[r] = rowLse2(rr);
      nvisRow[r] = h.select(ok, visibleCompressed(rowToken(rr)), h.c32(0));
    }
  }
  forThreads(h.c32(TPC * N), [&](Value k) {
    stI(topKOff, k, h.c32(keyOf(kEmpty)));
    stI(topIOff, k, h.c32(-1));
  });
  forThreads(h.c32(TPC), [&](Value tl) { stI(thrOff, tl, h.c32(keyOf(kEmpty))); });

  // Windows of the selection blocks the last token sees (earlier tokens see a prefix).
  const int carried = bb - 1;
  Value blocks = h.add(h.divs(tLast, h.c32(spec.slcBlock)), h.c32(1));
  Value windows = h.ceilDiv(blocks, h.c32(win.blocks));
  // The keys scored: those the last token sees, up to the last block's a x j.
  Value keysEnd = h.mins(visibleCompressed(tLast), h.add(h.mul(h.sub(blocks, h.c32(1)), h.c32(a)), h.c32(1)));
  Value totalChunks = h.ceilDiv(h.maxs(h.add(keysEnd, h.c32(a - 1)), h.c32(0)), h.c32(C));
  if (carried > 0)
    forThreads(h.c32(TPC * carried), [&](Value i) {
      stF(cmpOff, h.add(h.mul(h.divs(i, h.c32(carried)), h.c32(win.cmpCapacity)), h.rems(i, h.c32(carried))),
          h.cf(0.0f));
    });
  if (warpgroupMma()) stageKeyChunk(h.c32(0), totalChunks, keysEnd);
  scf::ForOp::create(b, h.loc, h.c32(0), windows, h.c32(1), ValueRange{}, [&](OpBuilder &, Location, Value w,
                                                                            ValueRange) {
    Value J0 = h.mul(w, h.c32(win.blocks));
    Value nBlocks = h.mins(h.c32(win.blocks), h.sub(blocks, J0));
    h.barrier();
    scoreWindow(w, J0, nBlocks, totalChunks, keysEnd);
    mergeWindow(J0, nBlocks);
    carryWindowTail();
    scf::YieldOp::create(h.b, h.loc);
  });
  if (warpgroupMma()) waitStaged(h); // the copy issued past the last chunk is empty
  writeSelection();
  gpu::ReturnOp::create(b, h.loc);
  return success();
}

} // namespace

LogicalResult buildTopNKernel(OpBuilder &builder, Location loc, const KernelSpec &spec, StringRef name) {
  return TopNKernelBuilder(builder, loc, spec, name).build();
}

} // namespace nsajit::tpl
