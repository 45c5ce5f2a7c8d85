#include "BackwardAttention.h"

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"
#include "OrderedSplitSum.h"
#include "SelectedBlockUnion.h"
#include "SelectionMap.h"
#include "TokenDone.h"
#include "WarpMma.h"
#include "WarpgroupMma.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <functional>
#include <limits>
#include <vector>

using namespace mlir;

namespace nsajit::tpl {
namespace {

// Index lists up to this length are scanned with unrolled loads.
constexpr int kUnrolledIndexScan = 64;

// The selected dK/dV walk's pivot alignment, in selection blocks (buildDkdv).
constexpr int kWalkPivotBlocks = 16;

constexpr float kLog2e = 1.4426950408889634f;

// BackwardKernelArgs, in order.
enum Arg { Q, K, V, IDX, O, LSE, DO, GATE, DELTA, DQ, DK, DV, DGATE, kNumTensors };

struct BwdParams {
  Value ptr[kNumTensors];
  Value workspace; // bwd_dkdv with split walks: the tiles' state, then fp32 partial sums
  Value tokenDone; // selected bwd_dq: the two-kernel schedule's hand-over (TokenDone.h), or null
  Value stride[kNumTensors][3];
  Value seqLen, kvLen;
  Value mapWords; // words a selection map row; 0: no map
};

class BackwardKernelBuilder {
public:
  BackwardKernelBuilder(OpBuilder &b, Location loc, const KernelSpec &spec, StringRef name)
      : name(name.str()), h(b, loc), mma(h, spec.dtype), wg(h, spec.dtype), spec(spec), Dk(spec.headDimQK), Dv(spec.headDimV),
        G(spec.group), W(spec.tile.warps), TQ(spec.tile.tokensPerCta), C(spec.tile.kvChunk) {}

  LogicalResult build();

private:
  void buildPreprocess();
  void buildDq();
  void buildDqTile();
  void buildDkdv();

  // bwd_dkdv: the CTA's chunk of keys, its split, and the query tokens tLo .. tHi it walks.
  struct DkdvWalk {
    Value numChunks, splits, chunk, split, k0, tLo, tHi;
  };
  DkdvWalk dkdvWalk();
  void startFirstChunksFirst();
  // How often token `tok` lists selection block `blk` (the n loads unrolled for the usual n).
  Value timesListed(Value tok, Value blk);
  // The selected branch's selection map (SelectionMap.h) of this CTA.
  SelectionMap selectionMap() {
    return SelectionMap(h, ids, W * 32, spec, {p.workspace, p.mapWords, p.seqLen, p.kvLen, batch, kvHead});
  }

  // Element offset of (batch, token-or-key, head) in tensor `t`.
  Value offset(Arg t, Value batchIdx, Value row, Value head) {
    return h.add(h.add(h.mul(h.ext64(batchIdx), p.stride[t][0]), h.mul(h.ext64(row), p.stride[t][1])),
                 h.mul(h.ext64(head), p.stride[t][2]));
  }
  // f32 load of an optional [B,T,HQ] tensor, `fallback` when it is absent or the row is invalid.
  Value loadOptionalF32(Arg t, Value present, Value off, float fallback);
  Value loadF32(Arg t, Value off) { return h.load(h.f32(), h.gep(p.ptr[t], h.f32(), off), 4); }
  void storeF32(Arg t, Value off, Value v) { h.store(v, h.gep(p.ptr[t], h.f32(), off), 4); }
  Value smemAt(int byteOffset) { return h.gep(smem, h.b.getI8Type(), h.c32(byteOffset)); }
  // Fragments by ldmatrix.x4: lane l addresses row l % 8 of 8x8 matrix l / 8;
  // `lo` = (l / 8) % 2 and `hi` = l / 16 pick the matrix's 8-row / 8-column block.
  Value matRow() { return h.rems(ids.lane, h.c32(8)); }
  Value matLo() { return h.rems(h.divs(ids.lane, h.c32(8)), h.c32(2)); }
  Value matHi() { return h.divs(ids.lane, h.c32(16)); }
  // Whether `pred` holds for a thread of this warpgroup (named barrier 1 + its
  // number; 0 is the CTA's).
  Value warpgroupAny(Value pred) {
    Value any = h.cbool(false);
    for (int g = 0; g < W / 4; ++g) {
      auto mine = scf::IfOp::create(
          h.b, h.loc, h.eq(h.divs(ids.warp, h.c32(4)), h.c32(g)),
          [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, ValueRange{h.anyAtBarrier(pred, 1 + g, 128)}); },
          [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, ValueRange{any}); });
      any = mine.getResult(0);
    }
    return any;
  }
  // wgmma (backwardUsesWarpgroupMma), else mma.sync.
  bool warpgroupMma() const { return backwardUsesWarpgroupMma(spec); }
  // FA3's ping-pong for the wide dQ kernels (two warpgroups on wgmma, dense
  // branches; defaultTileConfig): the warpgroups take turns issuing their batches of
  // products, so one computes P and dS while the other's products run. In
  // lockstep both issued together and then both left the tensor cores idle
  // for their elementwise work. H100, T = 64k (s15run1): compressed [paper]
  // dQ 17.1-17.3 -> 16.0 ms, window Dk = 192 dQ 5.7-5.8 -> 5.5 ms.
  // Not for dK/dV: the same turns there made the kernels slower (compressed
  // [paper] 23.8 -> 25.9, Dk = 128 5.1 -> 5.5, window Dk = 192 7.8-7.9 -> 8.3,
  // Dk = 128 5.6-5.9 -> 6.1 ms): their batches (S^T and dP^T, then dV and dK)
  // are longer than the elementwise work between them, so the turns only
  // serialise the tensor cores.
  // Warpgroup g waits at barrier kTurnBarrier + g before a batch and, once the
  // batch is issued, arrives at the other's. The walk starts with warpgroup 1
  // arriving at warpgroup 0's (startTurns) and ends with warpgroup 0 taking
  // the turn warpgroup 1 passed last (endTurns).
  static constexpr int kTurnBarrier = 3;
  bool pingPong() const {
    return spec.pass == KernelPass::BackwardDQ && warpgroupMma() && W == 8 && spec.branch != Branch::Selected;
  }
  // Runs body(g) in warpgroup g, with g an immediate (a register barrier id
  // makes ptxas reserve all 16 barriers).
  void perWarpgroup(const std::function<void(int)> &body) {
    for (int g = 0; g < 2; ++g)
      scf::IfOp::create(h.b, h.loc, h.eq(h.divs(ids.warp, h.c32(4)), h.c32(g)), [&](OpBuilder &, Location) {
        body(g);
        scf::YieldOp::create(h.b, h.loc);
      });
  }
  void takeTurn() {
    if (pingPong())
      perWarpgroup([&](int g) { h.namedBarrier(kTurnBarrier + g, 256); });
  }
  void passTurn() {
    if (pingPong())
      perWarpgroup([&](int g) { h.namedArrive(kTurnBarrier + 1 - g, 256); });
  }
  void startTurns() {
    if (pingPong())
      perWarpgroup([&](int g) {
        if (g == 1)
          h.namedArrive(kTurnBarrier, 256);
      });
  }
  // Closes a batch of wgmma products: commit, pass the turn (ping-pong), wait
  // for all of them. Returns the accumulators passed through.
  std::vector<Value> finishBatch(const std::vector<Value> &issued) {
    if (!pingPong())
      return wg.commitAndWait(issued);
    std::vector<Value> committed = wg.commit(issued);
    passTurn();
    return wg.wait(committed, 0);
  }
  void endTurns() {
    if (pingPong())
      perWarpgroup([&](int g) {
        if (g == 0)
          h.namedBarrier(kTurnBarrier, 256);
      });
  }
  // Shared tiles are 128-byte-swizzled panels on sm_90a (wgmma needs them; for
  // mma.sync's ldmatrix they also keep a row's copies on whole 128-byte lines:
  // padded rows cost 1.5x the ideal L2 sectors, see stageChunk in
  // ForwardAttention.cpp), padded rows on sm_80 (the swizzled addresses there
  // cost registers: dK/dV spills of 276-356 bytes with Dk = 128).
  bool swizzledTiles() const { return warpgroupMma() || spec.arch == Arch::SM90a; }
  int rowPad() const { return swizzledTiles() ? 0 : 8; }
  // A shared tile of `rows` rows from element `elemBase`: row-major with `pitch`
  // (padded rows) or in swizzled panels (pitch = its width).
  struct Tile {
    Value elemBase;
    int pitch, rows;
  };
  // The element address of this lane's 8 columns c0 + 8 matX (c0 a multiple of
  // 16) of tile row `row` (a multiple of 8 plus matRow). Swizzled panels: chunk
  // c of a panel's row r sits at chunk c ^ (r % 8).
  Value tileAt(const Tile &t, Value row, int c0, Value matX) {
    if (!swizzledTiles())
      return h.add(t.elemBase, h.add(h.mul(row, h.c32(t.pitch)), h.add(h.c32(c0), h.mul(matX, h.c32(8)))));
    Value chunk = arith::XOrIOp::create(h.b, h.loc, arith::XOrIOp::create(h.b, h.loc, matX, matRow()),
                                        h.c32((c0 / 8) % 8));
    return h.add(t.elemBase,
                 h.add(h.c32((c0 / 64) * t.rows * 64), h.add(h.mul(row, h.c32(64)), h.mul(chunk, h.c32(8)))));
  }
  // A fragment of 16 rows x 16 columns (k = 16kk..) of a tile:
  // matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15) in a0..a3 order.
  Frag4 loadA(const Tile &t, Value firstRow, int kk) {
    Value row = h.add(firstRow, h.add(h.mul(matLo(), h.c32(8)), matRow()));
    return mma.loadMatrices(smem, tileAt(t, row, 16 * kk, matHi()), false);
  }
  // B fragments (k = 16kk.. along the row, n = rows nRow..nRow+7 and nRow+8..+15) of a
  // tile (B = tile^T): matrices (k 0-7 | 8-15) of rows 0-7, then of rows 8-15.
  std::array<Frag2, 2> loadBTransposed2(const Tile &t, int nRow, int kk) {
    Value row = h.add(h.c32(nRow), h.add(h.mul(matHi(), h.c32(8)), matRow()));
    Frag4 m = mma.loadMatrices(smem, tileAt(t, row, 16 * kk, matLo()), false);
    return {Frag2{m[0], m[1]}, Frag2{m[2], m[3]}};
  }
  // acc[n] += A B^T for the 16 rows of tile A from aRow and the 8 acc.size()
  // rows of tile B, over `depth` columns.
  void mmaABt(std::vector<Frag4> &acc, const Tile &a, Value aRow, const Tile &b, int depth) {
    for (int kk = 0; kk < depth / 16; ++kk) {
      Frag4 af = loadA(a, aRow, kk);
      for (std::size_t n = 0; n < acc.size(); n += 2) {
        auto bf = loadBTransposed2(b, 8 * static_cast<int>(n), kk);
        acc[n] = mma.mma(af, bf[0], acc[n]);
        acc[n + 1] = mma.mma(af, bf[1], acc[n + 1]);
      }
    }
  }
  // B fragments (k = rows 16kk.., n = columns nCol..nCol+7 and nCol+8..+15) of a
  // tile, transposed by ldmatrix: matrices (rows 0-7 | 8-15) of columns 0-7,
  // then of columns 8-15.
  std::array<Frag2, 2> loadB2(const Tile &t, int kk, int nCol) {
    Value row = h.add(h.c32(16 * kk), h.add(h.mul(matLo(), h.c32(8)), matRow()));
    Frag4 m = mma.loadMatrices(smem, tileAt(t, row, nCol, matHi()), true);
    return {Frag2{m[0], m[1]}, Frag2{m[2], m[3]}};
  }
  // Copies `rows` rows of `dim` columns of tensor t into `tile`'s layout (left in flight).
  void stageTileAsync(const Tile &tile, int dim, Arg t, const RowOffsetFn &fn) {
    if (swizzledTiles())
      stageSwizzledPanels(h, ids, W * 32, smem, tile.elemBase, tile.rows, dim, p.ptr[t], fn, /*wait=*/false,
                          /*commit=*/false);
    else
      stageRows(h, ids, W * 32, smem, tile.elemBase, tile.pitch, tile.rows, dim, p.ptr[t], fn, /*wait=*/false,
                /*commit=*/false);
  }
  // Makes the staged tiles readable by wgmma (after the copies completed,
  // before the barrier); nothing for mma.sync.
  void publishStaged() {
    if (warpgroupMma())
      fenceAsyncProxy(h);
  }
  // For each (A, B, depth): the tiles of A B^T, this warp's 16 rows of A (rows
  // 16 warp..) against every row of B (its B.rows columns), over `depth` columns.
  std::vector<std::vector<Frag4>> productsABt(ArrayRef<std::tuple<Tile, Tile, int>> ops);
  // The same on wgmma with each A held in registers (this warp's 16 rows, the
  // depth 16 A.size()): only B is read from shared memory.
  std::vector<std::vector<Frag4>> productsARegsBt(ArrayRef<std::pair<std::vector<Frag4>, Tile>> ops);
  // The selected dQ union tiles on wgmma keep Q and dO in registers, loaded
  // once a tile: their 32-key chunks (Dk > 128) made S = Q K^T and dP = dO V^T
  // m64n32k16 with both operands in shared memory, 3 KB of reads (24 cycles)
  // for 16 cycles of tensor work. H100, T = 64k, local indices, the union
  // kernel: Dk = 192 16.83-16.86 -> 15.14-15.25 ms, Dk = 128 12.80-12.88 ->
  // 12.08-12.70 (s15run7; 240 / 228 registers, still two CTAs an SM). The wide
  // dense dQ kernels have no registers left for it (232 with Dk = 192).
  bool queriesInRegisters() const {
    return spec.pass == KernelPass::BackwardDQ && spec.branch == Branch::Selected && warpgroupMma();
  }
  // acc[i] += A[i] B[i]: A[i] register fragments (this warp's 16 rows, k = 16
  // A[i].size() rows of B[i]), B[i] a tile of those rows.
  void accumulateAB(ArrayRef<std::vector<Frag4> *> acc, ArrayRef<std::vector<Frag4>> a, ArrayRef<Tile> b);
  // The A fragments (16 columns each) of a warp's accumulator tiles (8 columns each), as 16-bit pairs.
  std::vector<Frag4> packAFragments(const std::vector<Frag4> &t) {
    std::vector<Frag4> a;
    for (size_t kk = 0; 2 * kk + 1 < t.size(); ++kk)
      a.push_back({mma.packFloats(t[2 * kk][0], t[2 * kk][1]), mma.packFloats(t[2 * kk][2], t[2 * kk][3]),
                   mma.packFloats(t[2 * kk + 1][0], t[2 * kk + 1][1]),
                   mma.packFloats(t[2 * kk + 1][2], t[2 * kk + 1][3])});
    return a;
  }
  void storePairs(Arg t, Value rowOff, const std::vector<Frag4> &acc, int r, float scale);
  // Returns whether this CTA writes dK/dV and, if so, the sums it writes.
  std::pair<Value, SmallVector<Value>> addSplitPartials(ValueRange flatAcc, Value contributed, Value chunk,
                                                        Value numChunks, Value split, Value splits, Value scratch);

  std::string name;
  IRBuilderHelpers h;
  WarpMma mma;
  WarpgroupMma wg;
  const KernelSpec &spec;
  const int Dk, Dv, G, W, TQ, C;
  BwdParams p;
  ThreadIds ids;
  Value batch, kvHead, smem, gatePresent;
  Value ctaX; // the CTA's place along the grid's x (startFirstChunksFirst)
  Operation *gpuModule = nullptr;
};

Value BackwardKernelBuilder::loadOptionalF32(Arg t, Value present, Value off, float fallback) {
  auto ifOp = scf::IfOp::create(
      h.b, h.loc, present,
      [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, ValueRange{loadF32(t, off)}); },
      [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, ValueRange{h.cf(fallback)}); });
  return ifOp.getResult(0);
}

std::vector<std::vector<Frag4>> BackwardKernelBuilder::productsABt(ArrayRef<std::tuple<Tile, Tile, int>> ops) {
  Value zero = h.cf(0.0f);
  std::vector<std::vector<Frag4>> out;
  if (!warpgroupMma()) {
    Value warpRow = h.mul(ids.warp, h.c32(16));
    for (auto &[a, b, depth] : ops) {
      std::vector<Frag4> acc(b.rows / 8, Frag4{zero, zero, zero, zero});
      mmaABt(acc, a, warpRow, b, depth);
      out.push_back(std::move(acc));
    }
    return out;
  }
  // One batch: every product issued, then one wait.
  size_t total = 0;
  for (auto &op : ops) total += std::get<1>(op).rows / 2;
  takeTurn();
  std::vector<Value> regs = wg.fence(std::vector<Value>(total, zero)), issued;
  Value warpgroupRow = h.mul(h.divs(ids.warp, h.c32(4)), h.c32(64));
  size_t at = 0;
  for (auto &[a, b, depth] : ops) {
    const size_t n = b.rows / 2;
    auto acc = wg.issueProductABt(ArrayRef<Value>(regs).slice(at, n), smem, {h.mul(a.elemBase, h.c32(2)), a.rows},
                                  warpgroupRow, {h.mul(b.elemBase, h.c32(2)), b.rows}, depth);
    issued.insert(issued.end(), acc.begin(), acc.end());
    at += n;
  }
  issued = finishBatch(issued);
  at = 0;
  for (auto &op : ops) {
    const size_t n = std::get<1>(op).rows / 2;
    out.push_back(WarpgroupMma::tiles(ArrayRef<Value>(issued).slice(at, n)));
    at += n;
  }
  return out;
}

std::vector<std::vector<Frag4>>
BackwardKernelBuilder::productsARegsBt(ArrayRef<std::pair<std::vector<Frag4>, Tile>> ops) {
  // One fence over the accumulators and the A registers, every product, one wait.
  size_t total = 0;
  std::vector<Value> regs;
  for (auto &op : ops) total += op.second.rows / 2;
  regs.assign(total, h.cf(0.0f));
  for (auto &op : ops) {
    auto f = WarpgroupMma::flatten(op.first);
    regs.insert(regs.end(), f.begin(), f.end());
  }
  takeTurn();
  regs = wg.fence(regs);
  std::vector<Value> issued;
  size_t at = 0, aAt = total;
  for (auto &[a, b] : ops) {
    const size_t n = b.rows / 2;
    auto acc = wg.issueProductARegsBt(ArrayRef<Value>(regs).slice(at, n),
                                      WarpgroupMma::tiles(ArrayRef<Value>(regs).slice(aAt, 4 * a.size())), smem,
                                      {h.mul(b.elemBase, h.c32(2)), b.rows});
    issued.insert(issued.end(), acc.begin(), acc.end());
    at += n, aAt += 4 * a.size();
  }
  issued = finishBatch(issued);
  std::vector<std::vector<Frag4>> out;
  at = 0;
  for (auto &op : ops) {
    const size_t n = op.second.rows / 2;
    out.push_back(WarpgroupMma::tiles(ArrayRef<Value>(issued).slice(at, n)));
    at += n;
  }
  return out;
}

void BackwardKernelBuilder::accumulateAB(ArrayRef<std::vector<Frag4> *> acc, ArrayRef<std::vector<Frag4>> a,
                                         ArrayRef<Tile> b) {
  if (!warpgroupMma()) {
    for (size_t kk = 0; kk < a[0].size(); ++kk)
      for (size_t i = 0; i < acc.size(); ++i) {
        std::vector<Frag4> &d = *acc[i];
        for (size_t n = 0; n < d.size(); n += 2) {
          auto bf = loadB2(b[i], static_cast<int>(kk), 8 * static_cast<int>(n));
          d[n] = mma.mma(a[i][kk], bf[0], d[n]);
          d[n + 1] = mma.mma(a[i][kk], bf[1], d[n + 1]);
        }
      }
    return;
  }
  // One fence over the accumulators and the A registers, every product, one wait.
  std::vector<Value> regs;
  for (auto *d : acc) {
    auto f = WarpgroupMma::flatten(*d);
    regs.insert(regs.end(), f.begin(), f.end());
  }
  const size_t nAcc = regs.size();
  for (auto &frags : a) {
    auto f = WarpgroupMma::flatten(frags);
    regs.insert(regs.end(), f.begin(), f.end());
  }
  takeTurn();
  regs = wg.fence(regs);
  std::vector<Value> issued;
  size_t at = 0, aAt = nAcc;
  for (size_t i = 0; i < acc.size(); ++i) {
    const size_t n = 4 * acc[i]->size(), an = 4 * a[i].size();
    std::vector<Frag4> frags = WarpgroupMma::tiles(ArrayRef<Value>(regs).slice(aAt, an));
    auto out = wg.issueProductAB(ArrayRef<Value>(regs).slice(at, n), frags, smem,
                                 {h.mul(b[i].elemBase, h.c32(2)), b[i].rows});
    issued.insert(issued.end(), out.begin(), out.end());
    at += n, aAt += an;
  }
  issued = finishBatch(issued);
  at = 0;
  for (auto *d : acc) {
    const size_t n = 4 * d->size();
    *d = WarpgroupMma::tiles(ArrayRef<Value>(issued).slice(at, n));
    at += n;
  }
}

// Stores row r (0: group, 1: group + 8) of the 16-row accumulator tiles as
// packed pairs at columns 8n + 2 tig.
void BackwardKernelBuilder::storePairs(Arg t, Value rowOff, const std::vector<Frag4> &acc, int r, float scale) {
  Value col = h.ext64(h.mul(ids.tig, h.c32(2)));
  for (size_t n = 0; n < acc.size(); ++n) {
    Value packed = mma.packFloats(h.fmul(acc[n][2 * r], h.cf(scale)), h.fmul(acc[n][2 * r + 1], h.cf(scale)));
    h.store(packed, h.gep(p.ptr[t], h.i16(), h.add(rowOff, h.add(col, h.c64(8 * n)))), 4);
  }
}

// dgate = rowsum(dO * o_c), delta = gate * dgate. Eight lanes per query row,
// each reading 16-byte vectors of O and dO (a thread per row, walking its row
// in 2-byte loads, took 8 ms at T = 64k on an H100: every warp load touched
// 32 rows); the eight partial sums meet by shuffles.
void BackwardKernelBuilder::buildPreprocess() {
  constexpr int kLanesPerRow = 8, kVecElems = 8;
  const int rows = TQ * G, rowsPerPass = W * 32 / kLanesPerRow, vectors = Dv / kVecElems;
  Value t0 = h.mul(h.blockIdX(), h.c32(TQ));
  Value laneInRow = h.rems(ids.tid, h.c32(kLanesPerRow));
  auto vecTy = VectorType::get({kVecElems}, mma.elementType());
  auto vecF32 = VectorType::get({kVecElems}, h.f32());
  // Passes are unrolled so that every lane of a warp takes part in the shuffles.
  for (int pass = 0; pass < (rows + rowsPerPass - 1) / rowsPerPass; ++pass) {
    Value r = h.add(h.divs(ids.tid, h.c32(kLanesPerRow)), h.c32(pass * rowsPerPass));
    Value tok = h.add(t0, h.divs(r, h.c32(G)));
    Value head = h.add(h.mul(kvHead, h.c32(G)), h.rems(r, h.c32(G)));
    Value valid = h.band(h.lt(r, h.c32(rows)), h.lt(tok, p.seqLen));
    Value safeTok = h.select(valid, tok, h.c32(0)), safeHead = h.select(valid, head, h.c32(0));
    Value oOff = offset(O, batch, safeTok, safeHead), dOff = offset(DO, batch, safeTok, safeHead);
    Value sum = h.cf(0.0f);
    for (int v0 = 0; v0 < vectors; v0 += kLanesPerRow) {
      Value vec = h.add(laneInRow, h.c32(v0));
      Value inRow = h.band(valid, h.lt(vec, h.c32(vectors)));
      auto part = scf::IfOp::create(
          h.b, h.loc, inRow,
          [&](OpBuilder &, Location) {
            Value col = h.ext64(h.mul(vec, h.c32(kVecElems)));
            auto loadVector = [&](Arg t, Value rowOff) {
              Value x = h.load(vecTy, h.gep(p.ptr[t], h.i16(), h.add(rowOff, col)), 16);
              return arith::ExtFOp::create(h.b, h.loc, vecF32, x).getResult();
            };
            Value prod = arith::MulFOp::create(h.b, h.loc, loadVector(O, oOff), loadVector(DO, dOff));
            Value acc = h.cf(0.0f);
            for (int e = 0; e < kVecElems; ++e)
              acc = h.fadd(acc, LLVM::ExtractElementOp::create(h.b, h.loc, prod, h.c32(e)));
            scf::YieldOp::create(h.b, h.loc, ValueRange{acc});
          },
          [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, ValueRange{h.cf(0.0f)}); });
      sum = h.fadd(sum, part.getResult(0));
    }
    for (int m = 1; m < kLanesPerRow; m *= 2) sum = h.fadd(sum, h.shflXor(sum, m));
    scf::IfOp::create(h.b, h.loc, h.band(valid, h.eq(laneInRow, h.c32(0))), [&](OpBuilder &, Location) {
      Value gate = loadOptionalF32(GATE, gatePresent, offset(GATE, batch, tok, head), 1.0f);
      storeF32(DELTA, offset(DELTA, batch, tok, head), h.fmul(gate, sum));
      scf::IfOp::create(h.b, h.loc, gatePresent, [&](OpBuilder &, Location) {
        storeF32(DGATE, offset(DGATE, batch, tok, head), sum);
        scf::YieldOp::create(h.b, h.loc);
      });
      scf::YieldOp::create(h.b, h.loc);
    });
  }
  if (spec.branch == Branch::Selected)
    selectionMap().mark(t0, TQ, [&](Value t, Value i) {
      return h.load(h.i32(), h.gep(p.ptr[IDX], h.i32(), h.add(offset(IDX, batch, t, kvHead), h.ext64(i))), 4);
    });
}

// Query-centric: the forward's walk over key chunks, accumulating dq. Two K/V
// buffers: chunk c + 1 is copied while chunk c is computed (H100, T = 64k,
// NSA paper parameters, before: bwd_dq 39.6 ms compressed, 34.6 selected).
// The selected branch with several tokens a CTA walks the union of their
// blocks (the forward's schedule, SelectedBlockUnion): each distinct block is
// staged once, and a row's probabilities carry its multiplicity of the block
// (2^(log2 m) in the exponent; 0 for a block it did not select).
void BackwardKernelBuilder::buildDq() {
  // The selected dQ kernel's two-kernel schedule (TokenDone.h): a default
  // kernel after the wgmma union tile computes only the CTAs that one left.
  if (spec.branch == Branch::Selected && !selectedDqWarpgroupTile(spec)) {
    TokenDone handOver(h, p.tokenDone, batch, kvHead, p.seqLen);
    scf::IfOp::create(h.b, h.loc, h.bnot(handOver.allDone(h.mul(h.blockIdX(), h.c32(TQ)), TQ)),
                      [&](OpBuilder &, Location) {
                        buildDqTile();
                        scf::YieldOp::create(h.b, h.loc);
                      });
    return;
  }
  buildDqTile();
}

void BackwardKernelBuilder::buildDqTile() {
  const int qPitch = Dk + rowPad(), dPitch = Dv + rowPad(), kPitch = Dk + rowPad(), vPitch = Dv + rowPad();
  const int R = W * 16;
  const int qBase = 0, dBase = R * qPitch, kvBase = dBase + R * dPitch, bufElems = C * (kPitch + vPitch);
  // The selected branch's per-token schedule keeps one buffer: its one-warp CTAs (G = 16) are many to
  // an SM, and a second buffer halves them (H100, T = 64k, random indices: bwd_dq 27.1 -> 44.2 ms).
  const bool unionSchedule = spec.branch == Branch::Selected && TQ > 1;
  const bool twoBuffers = spec.branch != Branch::Selected || unionSchedule;
  const int chunksPerBlock = spec.slcBlock / C;
  auto kBaseOf = [&](Value buf) { return h.add(h.c32(kvBase), h.mul(buf, h.c32(bufElems))); };
  auto vBaseOf = [&](Value buf) { return h.add(kBaseOf(buf), h.c32(C * kPitch)); };
  Value t0 = h.mul(h.blockIdX(), h.c32(TQ));
  Value tMax = h.mins(h.sub(p.seqLen, h.c32(1)), h.add(t0, h.c32(TQ - 1)));
  BranchKeys keys(h, spec, {p.ptr[IDX], {p.stride[IDX][0], p.stride[IDX][1], p.stride[IDX][2]}}, p.kvLen, batch,
                  kvHead, t0, tMax);

  auto rowToken = [&](Value r) { return h.add(t0, h.divs(r, h.c32(G))); };
  auto rowHead = [&](Value r) { return h.add(h.mul(kvHead, h.c32(G)), h.rems(r, h.c32(G))); };
  auto rowExists = [&](Value r) {
    return h.band(h.lt(h.divs(r, h.c32(G)), h.c32(TQ)), h.lt(rowToken(r), p.seqLen));
  };
  Value rowInWarp[2], tok[2], head[2], valid[2], lse2[2], delta[2], gate[2];
  Value inf = h.cf(std::numeric_limits<float>::infinity());
  for (int r = 0; r < 2; ++r) {
    rowInWarp[r] = h.add(h.mul(ids.warp, h.c32(16)), h.add(ids.group, h.c32(8 * r)));
    tok[r] = rowToken(rowInWarp[r]);
    head[r] = rowHead(rowInWarp[r]);
    valid[r] = rowExists(rowInWarp[r]);
    Value safeTok = h.select(valid[r], tok[r], h.c32(0));
    Value lse = loadF32(LSE, offset(LSE, batch, safeTok, head[r]));
    // A row that saw no key (lse = -inf) or does not exist gets P = 2^(s - inf) = 0.
    Value finite = h.band(valid[r], h.fgt(lse, h.cf(-std::numeric_limits<float>::infinity())));
    lse2[r] = h.select(finite, h.fmul(lse, h.cf(kLog2e)), inf);
    delta[r] = h.select(valid[r], loadF32(DELTA, offset(DELTA, batch, safeTok, head[r])), h.cf(0.0f));
    gate[r] = loadOptionalF32(GATE, h.band(gatePresent, valid[r]), offset(GATE, batch, safeTok, head[r]), 1.0f);
  }

  auto qRow = [&](Arg t) {
    return [&, t](Value r) -> std::pair<Value, Value> {
      return {offset(t, batch, rowToken(r), rowHead(r)), rowExists(r)};
    };
  };
  const Tile qTile{h.c32(qBase), qPitch, R}, dTile{h.c32(dBase), dPitch, R};
  auto stageQueries = [&] {
    stageTileAsync(qTile, Dk, Q, qRow(Q));
    stageTileAsync(dTile, Dv, DO, qRow(DO));
  };
  // The wgmma union tile is the first kernel of the two-kernel schedule: it
  // counts the union first and stages Q and dO only for a tile it computes
  // (`left`: one it leaves to the default kernel).
  const bool unionFirst = unionSchedule && warpgroupMma();
  TokenDone handOver(h, p.tokenDone, batch, kvHead, p.seqLen);
  const int unionLimit = selectedUnionLimit(spec);
  const int unionBase = 2 * (kvBase + 2 * bufElems);
  BranchKeys::IndexInput indexInput{p.ptr[IDX], {p.stride[IDX][0], p.stride[IDX][1], p.stride[IDX][2]}};
  std::unique_ptr<SelectedBlockUnion> blockUnion;
  Value left = h.cbool(false);
  if (unionFirst) {
    blockUnion = std::make_unique<SelectedBlockUnion>(h, ids, W * 32, smem, h.c32(unionBase), spec, TQ);
    // The bitmap build takes 128 threads (one warpgroup, the default tile).
    Value bitmap = W * 32 == 128 ? h.c32(unionBase + selectedUnionSharedBytes(TQ, spec.slcCount)) : Value();
    blockUnion->build(indexInput, batch, kvHead, t0, p.seqLen, p.kvLen, handOver.unionLimit(unionLimit), bitmap,
                      [&](Value unionBlocks) {
                        scf::IfOp::create(h.b, h.loc, h.bnot(handOver.leaves(unionBlocks, unionLimit)),
                                          [&](OpBuilder &, Location) {
                                            stageQueries();
                                            scf::YieldOp::create(h.b, h.loc);
                                          });
                      });
    left = handOver.leaves(blockUnion->count(), unionLimit);
  } else {
    stageQueries();
  }
  commitStaged(h);
  waitStaged(h);

  Value zero = h.cf(0.0f);
  std::vector<Frag4> init(Dk / 8, Frag4{zero, zero, zero, zero});
  SmallVector<Value> flat;
  for (auto &f : init) flat.append(f.begin(), f.end());
  const float scaleLog2 = spec.effectiveScale() * kLog2e;

  if (unionSchedule && !unionFirst) {
    blockUnion = std::make_unique<SelectedBlockUnion>(h, ids, W * 32, smem, h.c32(unionBase), spec, TQ);
    blockUnion->build(indexInput, batch, kvHead, t0, p.seqLen, p.kvLen);
  }
  Value numChunks = unionSchedule ? h.select(left, h.c32(0), h.mul(blockUnion->count(), h.c32(chunksPerBlock)))
                                  : keys.numChunks();
  // First key of chunk c and whether it holds keys (false past the last chunk).
  auto chunkAt = [&](Value c) -> std::pair<Value, Value> {
    Value inRange = h.lt(c, numChunks);
    Value cSafe = h.select(inRange, c, h.c32(0)); // never read past the index lists
    if (unionSchedule) {
      Value blk = blockUnion->block(h.divs(cSafe, h.c32(chunksPerBlock)));
      Value start = h.add(h.mul(blk, h.c32(spec.slcBlock)), h.mul(h.rems(cSafe, h.c32(chunksPerBlock)), h.c32(C)));
      return {h.select(inRange, start, h.c32(0)), inRange};
    }
    auto [start, active] = keys.chunkStart(cSafe);
    return {start, h.band(inRange, active)};
  };
  // Union schedule: each row's log2 multiplicity of chunk c's block (-inf when
  // it did not select it), and whether any row of the warp did (warp-uniform).
  auto unionBias = [&](Value c) { return blockUnion->rowBias(h.divs(c, h.c32(chunksPerBlock)), rowInWarp, G); };
  // One cp.async group per chunk (empty when it is skipped); zeros outside [0, kvLen).
  auto stageChunk = [&](Value buf, Value keyStart, Value active) {
    scf::IfOp::create(h.b, h.loc, active, [&](OpBuilder &, Location) {
      auto keyRow = [&](Arg t) {
        return [&, t](Value row) -> std::pair<Value, Value> {
          Value key = h.add(keyStart, row);
          Value ok = h.band(h.ge(key, h.c32(0)), h.lt(key, p.kvLen));
          return {offset(t, batch, h.select(ok, key, h.c32(0)), kvHead), ok};
        };
      };
      stageTileAsync({kBaseOf(buf), kPitch, C}, Dk, K, keyRow(K));
      stageTileAsync({vBaseOf(buf), vPitch, C}, Dv, V, keyRow(V));
      scf::YieldOp::create(h.b, h.loc);
    });
    commitStaged(h);
  };
  auto [start0, active0] = chunkAt(h.c32(0));
  if (twoBuffers)
    stageChunk(h.c32(0), start0, active0);
  SmallVector<Value> loopInit(flat);
  loopInit.push_back(start0);
  loopInit.push_back(active0);
  const int accSize = static_cast<int>(flat.size());
  // Q and dO in registers for the whole walk (queriesInRegisters): read once,
  // after every thread's copies of them landed.
  std::vector<Frag4> qFrags, dFrags;
  if (queriesInRegisters()) {
    h.barrier();
    Value warpRow = h.mul(ids.warp, h.c32(16));
    for (int kk = 0; kk < Dk / 16; ++kk) qFrags.push_back(loadA(qTile, warpRow, kk));
    for (int kk = 0; kk < Dv / 16; ++kk) dFrags.push_back(loadA(dTile, warpRow, kk));
  }
  startTurns();
  auto loop = scf::ForOp::create(
      h.b, h.loc, h.c32(0), numChunks, h.c32(1), loopInit, [&](OpBuilder &, Location, Value c, ValueRange loopIter) {
        ValueRange iter = loopIter.take_front(accSize);
        Value keyStart = loopIter[accSize], active = loopIter[accSize + 1];
        Value buf = twoBuffers ? h.rems(c, h.c32(2)) : h.c32(0);
        auto [nextStart, nextActive] = chunkAt(h.add(c, h.c32(1)));
        // wgmma reads the copies through the async proxy, behind a proxy fence that
        // also waits for copies in flight: there the next chunk's copies start after
        // the barrier (its buffer was last read before the previous closing barrier).
        if (!twoBuffers) {
          stageChunk(buf, keyStart, active);
          waitStaged(h, /*pending=*/0);
        } else if (!warpgroupMma()) {
          stageChunk(h.sub(h.c32(1), buf), nextStart, nextActive); // its buffer was freed by the last barrier
          waitStaged(h, /*pending=*/1);
        } else {
          waitStaged(h, /*pending=*/0);
        }
        publishStaged();
        h.barrier();
        if (twoBuffers && warpgroupMma())
          stageChunk(h.sub(h.c32(1), buf), nextStart, nextActive);
        Value kB = kBaseOf(buf), vB = vBaseOf(buf);
        Value compute = active;
        std::array<Value, 2> bias{h.cf(0.0f), h.cf(0.0f)};
        if (unionSchedule) {
          auto [rowBias, takesPart] = unionBias(c);
          bias = rowBias;
          // Skip blocks no row of the warp selected; wgmma is a warpgroup's, so
          // there of the warpgroup (named barrier 1 + its number; 0 is the CTA's).
          if (warpgroupMma())
            takesPart = warpgroupAny(takesPart);
          compute = h.band(compute, takesPart);
        }
        auto ifOp = scf::IfOp::create(
            h.b, h.loc, compute,
            [&](OpBuilder &, Location) {
              const int nTiles = C / 8;
              const Tile kTile{kB, kPitch, C}, vTile{vB, vPitch, C};
              auto products = queriesInRegisters()
                                  ? productsARegsBt({{qFrags, kTile}, {dFrags, vTile}})
                                  : productsABt({{qTile, kTile, Dk}, {dTile, vTile, Dv}}); // S = Q K^T, dP = dO V^T
              std::vector<Frag4> &s = products[0], &dp = products[1];
              // P from the saved lse, dS = P (gate dP - delta).
              Value keyBase = h.add(keyStart, h.mul(ids.tig, h.c32(2)));
              // P = 2^(s * scale * log2(e) + bias - lse2): one fma before the ex2.
              Value offset[2];
              for (int r = 0; r < 2; ++r)
                offset[r] = unionSchedule ? h.fsub(bias[r], lse2[r]) : h.fsub(h.cf(0.0f), lse2[r]);
              for (int n = 0; n < nTiles; ++n)
                for (int e = 0; e < 4; ++e) {
                  int r = e / 2;
                  Value key = h.add(keyBase, h.c32(n * 8 + (e & 1)));
                  Value ok = h.band(h.band(h.ge(key, h.c32(0)), h.lt(key, p.kvLen)), keys.visible(tok[r], key));
                  Value pr = h.exp2(h.fma(s[n][e], h.cf(scaleLog2), offset[r]));
                  pr = h.select(ok, pr, zero);
                  s[n][e] = h.fmul(pr, h.fsub(h.fmul(gate[r], dp[n][e]), delta[r]));
                }
              // dQ += dS K.
              std::vector<Frag4> acc;
              for (int n = 0; n < Dk / 8; ++n) acc.push_back({iter[4 * n], iter[4 * n + 1], iter[4 * n + 2], iter[4 * n + 3]});
              accumulateAB({&acc}, {packAFragments(s)}, {kTile});
              SmallVector<Value> out;
              for (auto &f : acc) out.append(f.begin(), f.end());
              scf::YieldOp::create(h.b, h.loc, out);
            },
            [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, iter); });
        h.barrier(); // the buffer is overwritten by the next iteration's copies
        SmallVector<Value> next(ifOp.getResults());
        next.push_back(nextStart);
        next.push_back(nextActive);
        scf::YieldOp::create(h.b, h.loc, next);
      });
  endTurns();
  waitStaged(h); // the copy issued past the last chunk is empty; leave nothing in flight

  std::vector<Frag4> acc;
  for (int n = 0; n < Dk / 8; ++n)
    acc.push_back({loop.getResult(4 * n), loop.getResult(4 * n + 1), loop.getResult(4 * n + 2), loop.getResult(4 * n + 3)});
  for (int r = 0; r < 2; ++r)
    scf::IfOp::create(h.b, h.loc, h.band(valid[r], h.bnot(left)), [&](OpBuilder &, Location) {
      storePairs(DQ, offset(DQ, batch, tok[r], head[r]), acc, r, spec.effectiveScale());
      scf::YieldOp::create(h.b, h.loc);
    });
  if (unionFirst)
    handOver.mark(ids, t0, TQ, h.bnot(left));
}

// Grid x = chunks x splits (OrderedSplitSum): split s walks segment S - 1 - s
// of the chunk's query tokens, so the sums run from the last tokens to the
// first. A split waits for the splits before it, and the heavy segment of a
// selected block (its neighbours, which select it) is its first: it comes last
// and waits for the light ones, not they for it.
// The selected and window branches: the splits of a chunk adjacent along x,
// segments of the chunk's own span. The compressed branch: segment-major
// (x = split x chunks + chunk) over segments of the first chunk's span, the
// same token ranges for every chunk. A split then waits for earlier splits
// dispatched long before it (adjacent ones ran alongside it), and the CTAs
// that run together read the same Q and dO rows (L2 hit rate 12 -> 78 %).
// H100, T = 64k, [paper], ms (s14run3): chunk-relative segments of 4096 /
// 2048 / 1024 tokens 25.1 / 27.6 / 34.7, segment-major 25.6 / 23.7 / 23.8;
// l = d = 64: 5.4-5.7 / 5.4-5.6 / 7.0, segment-major 5.6-5.7 / 5.6 / 5.3.
// The selected walk segment-major (8192-token segments) took random indices
// 19.3 -> 17.4 ms but local ones 21.6 -> 23.6 ([paper]; [main] 14.5 -> 13.0,
// 16.1 -> 18.4; s14run4): a local block's tokens lie in one or two segments,
// so most of its CTAs stage K/V and scan the map for nothing; it stays
// chunk-relative.
// (The window's walk rotated so that neighbouring chunks read each step
// together raised its L2 hit rate 4 -> 64 % but took 8.6 ms against 7.9:
// these kernels wait on latency and barriers, not on DRAM; s14run2.)
BackwardKernelBuilder::DkdvWalk BackwardKernelBuilder::dkdvWalk() {
  DkdvWalk w;
  const bool segmentMajor = spec.branch == Branch::Compressed;
  w.numChunks = h.ceilDiv(p.kvLen, h.c32(C));
  w.splits = h.maxs(h.divs(h.gridDimX(), w.numChunks), h.c32(1));
  w.chunk = segmentMajor ? h.rems(ctaX, w.numChunks) : h.divs(ctaX, w.splits);
  w.split = segmentMajor ? h.divs(ctaX, w.numChunks) : h.rems(ctaX, w.splits);
  w.k0 = h.mul(w.chunk, h.c32(C));
  // The query tokens that can see keys k0 .. k0 + C - 1.
  Value tLo, tHi = h.sub(p.seqLen, h.c32(1));
  switch (spec.branch) {
  case Branch::Compressed:
    tLo = h.add(h.mul(w.k0, h.c32(spec.cmpStride)), h.c32(spec.cmpBlock - 1));
    break;
  case Branch::Window:
    tLo = w.k0;
    tHi = h.mins(tHi, h.add(w.k0, h.c32(C - 1 + spec.window - 1)));
    break;
  case Branch::Selected:
    tLo = h.mul(h.divs(w.k0, h.c32(spec.slcBlock)), h.c32(spec.slcBlock));
    break;
  }
  // This split's segment: whole steps of TQ tokens, the last segment shorter
  // (segment-major: of the first chunk's span, clipped to this chunk's).
  Value base = segmentMajor ? h.c32(spec.cmpBlock - 1) : tLo;
  Value span = h.maxs(h.add(h.sub(tHi, base), h.c32(1)), h.c32(0));
  Value segLen = h.mul(h.ceilDiv(h.ceilDiv(span, w.splits), h.c32(TQ)), h.c32(TQ));
  Value segment = h.sub(h.sub(w.splits, h.c32(1)), w.split);
  Value segStart = h.add(base, h.mul(segment, segLen));
  w.tLo = segmentMajor ? h.maxs(tLo, segStart) : segStart; // (a chunk's own segments start at tLo or later)
  w.tHi = h.mins(tHi, h.sub(h.add(segStart, segLen), h.c32(1)));
  return w;
}

Value BackwardKernelBuilder::timesListed(Value tok, Value blk) {
  Value rowOff = offset(IDX, batch, tok, kvHead);
  auto listed = [&](Value i) {
    Value j = h.load(h.i32(), h.gep(p.ptr[IDX], h.i32(), h.add(rowOff, h.ext64(i))), 4);
    return h.select(h.eq(j, blk), h.c32(1), h.c32(0));
  };
  Value count = h.c32(0);
  if (spec.slcCount <= kUnrolledIndexScan) {
    for (int i = 0; i < spec.slcCount; ++i) count = h.add(count, listed(h.c32(i)));
    return count;
  }
  return scf::ForOp::create(h.b, h.loc, h.c32(0), h.c32(spec.slcCount), h.c32(1), ValueRange{count},
                            [&](OpBuilder &, Location, Value i, ValueRange m) {
                              scf::YieldOp::create(h.b, h.loc, ValueRange{h.add(m[0], listed(i))});
                            })
      .getResult(0);
}

// Key-centric: this CTA's C keys against every query row that sees them.
void BackwardKernelBuilder::buildDkdv() {
  const int kPitch = Dk + rowPad(), vPitch = Dv + rowPad(), qPitch = Dk + rowPad(), dPitch = Dv + rowPad();
  const int Rq = TQ * G; // query rows per step
  // Shared layout: the CTA's K and V rows; per step buffer (dkdvStepBuffers:
  // the next step's rows are copied while one is computed) the Q and dO rows
  // (elements), then per buffer the rows' lse / delta / gate / multiplicity
  // floats and the slots' tokens (bytes); then 8 bytes for
  // OrderedSplitSum, the warps' totals (32 bytes) and the selected branch's
  // token list of a window (32 W words: 1024 W 16-bit entries).
  const int buffers = dkdvStepBuffers(spec);
  const int kBase = 0, vBase = C * kPitch, rowsBase = vBase + C * vPitch, rowsElems = Rq * (qPitch + dPitch);
  const int scalarsBase = 2 * (rowsBase + buffers * rowsElems), scalarBytes = 16 * Rq + 4 * TQ;
  const int splitScratchOff = scalarsBase + buffers * scalarBytes;
  const int warpTotalsOff = splitScratchOff + 8, listOff = warpTotalsOff + 32;
  auto qBaseOf = [&](Value buf) { return h.add(h.c32(rowsBase), h.mul(buf, h.c32(rowsElems))); };
  auto dBaseOf = [&](Value buf) { return h.add(qBaseOf(buf), h.c32(Rq * qPitch)); };
  // Byte offset of scalar array `which` (0 -lse2, 1 delta, 2 gate, 3 mult: Rq floats; 4 tokens: TQ ints)
  // of buffer `buf`.
  auto scalarsOf = [&](Value buf, int which) {
    int off = which < 4 ? 4 * Rq * which : 16 * Rq + 4 * TQ * (which - 4);
    return h.gep(smem, h.b.getI8Type(), h.add(h.c32(scalarsBase + off), h.mul(buf, h.c32(scalarBytes))));
  };
  enum { kNegLse2, kDelta, kGate, kMult, kTok };

  DkdvWalk walk = dkdvWalk();
  Value numChunks = walk.numChunks, splits = walk.splits, chunk = walk.chunk, split = walk.split, k0 = walk.k0;
  Value tLo = walk.tLo, tHi = walk.tHi;
  Value numSteps = h.select(h.ge(tHi, tLo), h.ceilDiv(h.add(h.sub(tHi, tLo), h.c32(1)), h.c32(TQ)), h.c32(0));
  BranchKeys keys(h, spec, {p.ptr[IDX], {p.stride[IDX][0], p.stride[IDX][1], p.stride[IDX][2]}}, p.kvLen, batch,
                  kvHead, k0, k0);

  // The CTA's keys, staged once.
  auto keyRow = [&](Arg t) {
    return [&, t](Value row) -> std::pair<Value, Value> {
      Value key = h.add(k0, row);
      return {offset(t, batch, key, kvHead), h.lt(key, p.kvLen)};
    };
  };
  const Tile kTile{h.c32(kBase), kPitch, C}, vTile{h.c32(vBase), vPitch, C};
  stageTileAsync(kTile, Dk, K, keyRow(K));
  stageTileAsync(vTile, Dv, V, keyRow(V));
  commitStaged(h);
  waitStaged(h);

  Value zero = h.cf(0.0f);
  SmallVector<Value> flat(4 * (Dk / 8 + Dv / 8), zero);
  const float scaleLog2 = spec.effectiveScale() * kLog2e;
  Value warpKey = h.mul(ids.warp, h.c32(16));
  auto at = [&](Value buf, int which, Type t, Value i) { return h.gep(scalarsOf(buf, which), t, i); };
  auto slotToken = [&](Value buf, Value slot) { return h.load(h.i32(), at(buf, kTok, h.i32(), slot), 4); };
  auto rowF32 = [&](Value buf, int which, Value r) { return h.load(h.f32(), at(buf, which, h.f32(), r), 4); };

  // The Q and dO row r of a step: token slot r / G, head r % G; `token(slot)`
  // gives the slot's token and whether it takes part.
  using SlotFn = std::function<std::pair<Value, Value>(Value slot)>;
  auto rowOf = [&](Arg t, const SlotFn &token) {
    return [&, t, token](Value r) -> std::pair<Value, Value> {
      auto [tok, ok] = token(h.divs(r, h.c32(G)));
      Value head = h.add(h.mul(kvHead, h.c32(G)), h.rems(r, h.c32(G)));
      return {offset(t, batch, h.select(ok, tok, h.c32(0)), head), ok};
    };
  };
  // Starts the copies of a step's Q and dO rows into buffer `buf` (the caller commits and waits).
  auto stageStepRows = [&](Value buf, const SlotFn &token) {
    stageTileAsync({qBaseOf(buf), qPitch, Rq}, Dk, Q, rowOf(Q, token));
    stageTileAsync({dBaseOf(buf), dPitch, Rq}, Dv, DO, rowOf(DO, token));
  };
  // The scalars of the rows this thread stores (rows tid, tid + threads, ...):
  // -lse * log2(e) (-inf where the row saw no key or takes no part: P = 0), delta,
  // gate, multiplicity. Loaded early, stored once the buffer is free.
  const int threads = W * 32, scalarPasses = (Rq + threads - 1) / threads;
  auto loadScalars = [&](const SlotFn &token, const std::function<Value(Value slot)> &multOf) {
    SmallVector<Value> v;
    for (int pass = 0; pass < scalarPasses; ++pass) {
      // Rows past Rq (the last pass) read row 0's slot: the selected slots are shared memory.
      Value inStep = h.lt(h.add(ids.tid, h.c32(pass * threads)), h.c32(Rq));
      Value r = h.select(inStep, h.add(ids.tid, h.c32(pass * threads)), h.c32(0));
      auto [off, ok0] = rowOf(LSE, token)(r);
      Value ok = h.band(ok0, inStep);
      Value slot = h.divs(r, h.c32(G));
      Value tok = h.select(ok, token(slot).first, h.c32(0));
      Value head = h.add(h.mul(kvHead, h.c32(G)), h.rems(r, h.c32(G)));
      Value lse = loadOptionalF32(LSE, ok, off, -std::numeric_limits<float>::infinity());
      Value finite = h.band(ok, h.fgt(lse, h.cf(-std::numeric_limits<float>::infinity())));
      v.push_back(h.select(finite, h.fmul(lse, h.cf(-kLog2e)), h.cf(-std::numeric_limits<float>::infinity())));
      v.push_back(loadOptionalF32(DELTA, ok, offset(DELTA, batch, tok, head), 0.0f));
      v.push_back(loadOptionalF32(GATE, h.band(gatePresent, ok), offset(GATE, batch, tok, head), 1.0f));
      v.push_back(arith::SIToFPOp::create(h.b, h.loc, h.f32(), h.select(ok, multOf(slot), h.c32(0))));
    }
    return v;
  };
  auto storeScalars = [&](Value buf, ValueRange v) {
    for (int pass = 0; pass < scalarPasses; ++pass) {
      Value r = h.add(ids.tid, h.c32(pass * threads));
      scf::IfOp::create(h.b, h.loc, h.lt(r, h.c32(Rq)), [&](OpBuilder &, Location) {
        for (int which = kNegLse2; which <= kMult; ++which)
          h.store(v[4 * pass + which], at(buf, which, h.f32(), r), 4);
        scf::YieldOp::create(h.b, h.loc);
      });
    }
  };

  // dK and dV of one step from buffer `buf` (its rows, scalars and slots staged and visible).
  // `fullyVisible` (dense branches; may be null): every token of the step sees every key of
  // the CTA, so P needs no per-element mask (rows that take no part have -lse2 = -inf: P = 0).
  auto computeStep = [&](ValueRange iter, Value buf, Value fullyVisible) -> SmallVector<Value> {
    const Tile qTile{qBaseOf(buf), qPitch, Rq}, dTile{dBaseOf(buf), dPitch, Rq};
    const int nTiles = Rq / 8;
    auto products = productsABt({{kTile, qTile, Dk}, {vTile, dTile, Dv}}); // S^T = K Q^T, dP^T = V dO^T
    std::vector<Frag4> &st = products[0], &dpt = products[1];
    // P^T (times multiplicity) and dS^T, element (key = warpKey + group (+8), row = 8n + 2 tig (+1)):
    // the pg values, then the ds values.
    auto probabilities = [&](bool mask) {
      SmallVector<Value> out(8 * nTiles);
      for (int n = 0; n < nTiles; ++n)
        for (int e = 0; e < 4; ++e) {
          Value row = h.add(h.c32(8 * n + (e & 1)), h.mul(ids.tig, h.c32(2)));
          Value pr = h.exp2(h.fma(st[n][e], h.cf(scaleLog2), rowF32(buf, kNegLse2, row)));
          if (mask) {
            Value key = h.add(k0, h.add(warpKey, h.add(ids.group, h.c32(e >= 2 ? 8 : 0))));
            Value tok = slotToken(buf, h.divs(row, h.c32(G)));
            Value mult = rowF32(buf, kMult, row);
            Value ok = h.band(h.band(h.lt(key, p.kvLen), keys.visible(tok, key)), h.fgt(mult, zero));
            pr = h.select(ok, h.fmul(mult, pr), zero);
          }
          Value gate = rowF32(buf, kGate, row);
          out[4 * n + e] = h.fmul(pr, gate);
          out[4 * nTiles + 4 * n + e] = h.fmul(pr, h.fsub(h.fmul(gate, dpt[n][e]), rowF32(buf, kDelta, row)));
        }
      return out;
    };
    SmallVector<Value> probs;
    if (fullyVisible) {
      auto op = scf::IfOp::create(
          h.b, h.loc, fullyVisible,
          [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, probabilities(false)); },
          [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, probabilities(true)); });
      probs.assign(op.getResults().begin(), op.getResults().end());
    } else {
      probs = probabilities(true);
    }
    std::vector<Frag4> pg(nTiles), ds(nTiles);
    for (int i = 0; i < 4 * nTiles; ++i) {
      pg[i / 4][i % 4] = probs[i];
      ds[i / 4][i % 4] = probs[4 * nTiles + i];
    }
    std::vector<Frag4> dk, dv;
    for (int n = 0; n < Dk / 8; ++n) dk.push_back({iter[4 * n], iter[4 * n + 1], iter[4 * n + 2], iter[4 * n + 3]});
    int vOff = 4 * (Dk / 8);
    for (int n = 0; n < Dv / 8; ++n)
      dv.push_back({iter[vOff + 4 * n], iter[vOff + 4 * n + 1], iter[vOff + 4 * n + 2], iter[vOff + 4 * n + 3]});
    accumulateAB({&dv, &dk}, {packAFragments(pg), packAFragments(ds)}, {dTile, qTile}); // dV += P^T dO, dK += dS^T Q
    SmallVector<Value> out;
    for (auto &f : dk) out.append(f.begin(), f.end());
    for (auto &f : dv) out.append(f.begin(), f.end());
    return out;
  };

  // The pipelined walk over `numSteps` steps of TQ slots: step s + 1's rows
  // copied (and its scalars loaded) while step s is computed, in a ring of
  // `buffers`. With two, a closing barrier a step frees the buffer that the
  // next step's copies overwrite; with three, they go into the buffer of step
  // s - 2, which every warp left before this step's barrier, so the step has
  // one barrier (the dense dK/dV kernels waited at their barriers more than on
  // anything else: Nsight Compute, s16run6; dkdvStepBuffers says where it paid).
  // `stepToken(step)(slot)`: the slot's token and whether it takes part;
  // `stepMult(step)(slot)`: how often it lists the keys (dense branches: 1);
  // `fullyVisible(step)`: no per-element mask is needed (null: always mask).
  using StepFn = std::function<SlotFn(Value step)>;
  using StepMultFn = std::function<std::function<Value(Value slot)>(Value step)>;
  auto runSteps = [&](Value numSteps, const StepFn &stepToken, const StepMultFn &stepMult,
                      const std::function<Value(Value step)> &fullyVisible, ValueRange init) {
    auto storeSlots = [&](Value buf, Value step) {
      scf::IfOp::create(h.b, h.loc, h.lt(ids.tid, h.c32(TQ)), [&](OpBuilder &, Location) {
        h.store(stepToken(step)(ids.tid).first, at(buf, kTok, h.i32(), ids.tid), 4);
        scf::YieldOp::create(h.b, h.loc);
      });
    };
    Value first = h.c32(0);
    scf::IfOp::create(h.b, h.loc, h.gt(numSteps, first), [&](OpBuilder &, Location) {
      stageStepRows(first, stepToken(first));
      scf::YieldOp::create(h.b, h.loc);
    });
    commitStaged(h);
    storeSlots(first, first);
    storeScalars(first, loadScalars(stepToken(first), stepMult(first)));
    auto loop = scf::ForOp::create(
        h.b, h.loc, h.c32(0), numSteps, h.c32(1), init, [&](OpBuilder &, Location, Value s, ValueRange iter) {
          Value buf, nextBuf, next;
          if (buffers == 2) {
            buf = h.rems(s, h.c32(2)), nextBuf = h.sub(h.c32(1), buf), next = h.add(s, h.c32(1));
          } else {
            next = h.add(s, h.c32(1)), buf = h.rems(s, h.c32(buffers)), nextBuf = h.rems(next, h.c32(buffers));
          }
          // The next step's buffer: freed by the previous iteration's closing
          // barrier, or (three buffers) last read two steps back.
          auto startNextStep = [&] {
            scf::IfOp::create(h.b, h.loc, h.lt(next, numSteps), [&](OpBuilder &, Location) {
              stageStepRows(nextBuf, stepToken(next));
              scf::YieldOp::create(h.b, h.loc);
            });
            commitStaged(h);
          };
          // wgmma reads through the async proxy, behind a fence that also waits for
          // copies in flight: there the next step's copies start after the barrier.
          if (warpgroupMma()) {
            waitStaged(h, /*pending=*/0);
            publishStaged();
            h.barrier();
            startNextStep();
          } else {
            startNextStep();
          }
          SmallVector<Value> nextScalars = loadScalars(stepToken(next), stepMult(next));
          if (!warpgroupMma()) {
            waitStaged(h, /*pending=*/1);
            h.barrier();
          }
          SmallVector<Value> out = computeStep(iter, buf, fullyVisible ? fullyVisible(s) : Value());
          storeSlots(nextBuf, next);
          storeScalars(nextBuf, nextScalars);
          if (buffers == 2)
            h.barrier(); // the buffer is overwritten by the next iteration's copies
          scf::YieldOp::create(h.b, h.loc, out);
        });
    waitStaged(h); // the copies issued past the last step are empty; leave nothing in flight
    return SmallVector<Value>(loop.getResults());
  };

  SmallVector<Value> results;
  Value contributed; // whether any step ran (else the partial sums are zeros)
  if (spec.branch != Branch::Selected) {
    // Every token of tLo .. tHi sees the keys: steps of TQ consecutive tokens.
    contributed = h.gt(numSteps, h.c32(0));
    StepFn stepToken = [&](Value step) -> SlotFn {
      return [&, step](Value slot) -> std::pair<Value, Value> {
        Value t = h.add(h.add(tLo, h.mul(step, h.c32(TQ))), slot);
        return {t, h.band(h.lt(step, numSteps), h.band(h.le(t, tHi), h.lt(t, p.seqLen)))};
      };
    };
    StepMultFn stepMult = [&](Value step) -> std::function<Value(Value)> {
      return [&, step](Value slot) { return h.select(stepToken(step)(slot).second, h.c32(1), h.c32(0)); };
    };
    auto fullyVisible = [&](Value step) {
      Value first = h.add(tLo, h.mul(step, h.c32(TQ)));
      BranchKeys stepKeys(h, spec, {p.ptr[IDX], {p.stride[IDX][0], p.stride[IDX][1], p.stride[IDX][2]}}, p.kvLen,
                          batch, kvHead, first, h.mins(h.add(first, h.c32(TQ - 1)), tHi));
      return stepKeys.chunkFullyVisible(k0, C);
    };
    results = runSteps(numSteps, stepToken, stepMult, fullyVisible, flat);
  } else {
    // The selected branch: only the tokens whose index list names this block
    // see its keys (SelectionMap::walk finds them window by window); each
    // window's list is walked in the pipelined steps of the dense branches.
    Value blk = h.divs(k0, h.c32(spec.slcBlock));
    // The first token walked: the block's first token rounded up to a multiple
    // of kWalkPivotBlocks blocks. Local selections (the initial block, the
    // local ones, most others among the ~16 blocks before a token) put a
    // block's tokens mostly in the ~16 blocks after it; the CTAs of the blocks
    // whose pivots agree then read each token's Q and dO rows together, while
    // they are in L2 (without: each 64 tokens behind its neighbour, a step
    // pace that left the rows evicted in between). The order stays a function
    // of the indices: the sums are deterministic. H100, T = 64k, [paper],
    // selected dK/dV on local indices 21.7 -> 19.8 ms, random 19.2 -> 19.3
    // ([main] 15.9 -> 14.7, 14.6 -> 14.7; s16run1).
    const int pivotTokens = kWalkPivotBlocks * spec.slcBlock;
    Value pivot = h.mul(h.ceilDiv(h.mul(blk, h.c32(spec.slcBlock)), h.c32(pivotTokens)), h.c32(pivotTokens));
    auto listed = [&](Value t, Value b) { return timesListed(t, b); };
    SmallVector<Value> all = selectionMap().walk(blk, tLo, tHi, smemAt(warpTotalsOff), smemAt(listOff), flat, listed,
                                                 [&](Value count, Value listTokenBase, ValueRange acc) {
      Value listPtr = smemAt(listOff);
      // The window's walk starts at its first listed token at or after the
      // pivot and wraps around to the tokens before it.
      Value rotation = selectionMap().entriesBefore(listPtr, count, listTokenBase, pivot);
      StepFn stepToken = [&, count, listTokenBase, listPtr, rotation](Value step) -> SlotFn {
        return [&, step, count, listTokenBase, listPtr, rotation](Value slot) -> std::pair<Value, Value> {
          Value k = h.add(h.mul(step, h.c32(TQ)), slot);
          Value ok = h.lt(k, count);
          Value rotated = h.add(k, rotation);
          rotated = h.select(h.ge(rotated, count), h.sub(rotated, count), rotated);
          Value entry = h.load(h.i16(), h.gep(listPtr, h.i16(), h.select(ok, rotated, h.c32(0))), 2);
          Value t = h.add(listTokenBase, arith::ExtUIOp::create(h.b, h.loc, h.i32(), entry).getResult());
          return {h.select(ok, t, h.c32(0)), ok};
        };
      };
      StepMultFn stepMult = [&, stepToken](Value step) -> std::function<Value(Value)> {
        return [&, step, stepToken](Value slot) {
          auto [t, ok] = stepToken(step)(slot);
          return h.select(ok, timesListed(t, blk), h.c32(0));
        };
      };
      Value steps = h.ceilDiv(count, h.c32(TQ));
      return runSteps(steps, stepToken, stepMult, nullptr, acc);
    });
    results.assign(all.begin(), all.begin() + (all.size() - 1));
    contributed = h.fgt(all.back(), h.cf(0.0f));
  }

  auto unflatten = [&](ValueRange flatAcc) {
    std::pair<std::vector<Frag4>, std::vector<Frag4>> t;
    for (int n = 0; n < Dk / 8; ++n)
      t.first.push_back({flatAcc[4 * n], flatAcc[4 * n + 1], flatAcc[4 * n + 2], flatAcc[4 * n + 3]});
    const int vOff = 4 * (Dk / 8);
    for (int n = 0; n < Dv / 8; ++n)
      t.second.push_back({flatAcc[vOff + 4 * n], flatAcc[vOff + 4 * n + 1], flatAcc[vOff + 4 * n + 2],
                          flatAcc[vOff + 4 * n + 3]});
    return t;
  };
  auto storeOutputs = [&](ValueRange flatAcc) {
    auto [dk, dv] = unflatten(flatAcc);
    for (int r = 0; r < 2; ++r) {
      Value key = h.add(k0, h.add(warpKey, h.add(ids.group, h.c32(8 * r))));
      scf::IfOp::create(h.b, h.loc, h.lt(key, p.kvLen), [&](OpBuilder &, Location) {
        storePairs(DK, offset(DK, batch, key, kvHead), dk, r, spec.effectiveScale());
        storePairs(DV, offset(DV, batch, key, kvHead), dv, r, 1.0f);
        scf::YieldOp::create(h.b, h.loc);
      });
    }
  };
  // One CTA a chunk writes its sums; split walks meet first, and the last to arrive writes.
  // (One store path for both: the dK/dV kernel is the largest PTX of a configuration.)
  SmallVector<Type> finalTypes{h.i1()};
  finalTypes.append(results.size(), h.f32());
  auto final = scf::IfOp::create(
      h.b, h.loc, h.eq(splits, h.c32(1)),
      [&](OpBuilder &, Location) {
        SmallVector<Value> out{h.cbool(true)};
        out.append(results.begin(), results.end());
        scf::YieldOp::create(h.b, h.loc, out);
      },
      [&](OpBuilder &, Location) {
        auto [writes, sums] =
            addSplitPartials(results, contributed, chunk, numChunks, split, splits, smemAt(splitScratchOff));
        SmallVector<Value> out{writes};
        out.append(sums.begin(), sums.end());
        scf::YieldOp::create(h.b, h.loc, out);
      });
  scf::IfOp::create(h.b, h.loc, final.getResult(0), [&](OpBuilder &, Location) {
    storeOutputs(final.getResults().drop_front());
    scf::YieldOp::create(h.b, h.loc);
  });
}

// The CTAs of a split walk that found work add their partial dK/dV in split
// order into the workspace (OrderedSplitSum); the last CTA to arrive writes
// dK/dV (the caller stores the sums returned to it). Workspace: OrderedSplitSum::kStateBytes per (batch, head,
// chunk) tile, padded to 256 bytes, then per tile C rows of Dk + Dv fp32 sums
// (dK then dV columns), laid out like the accumulators.
std::pair<Value, SmallVector<Value>> BackwardKernelBuilder::addSplitPartials(ValueRange flatAcc, Value contributed,
                                                                           Value chunk, Value numChunks, Value split,
                                                                           Value splits, Value scratch) {
  const int rowFloats = Dk + Dv, stateFloats = OrderedSplitSum::kStateBytes / 4;
  Value tile = h.add(h.mul(h.add(h.mul(batch, h.gridDimY()), kvHead), numChunks), chunk);
  Value tiles = h.mul(h.mul(h.gridDimZ(), h.gridDimY()), numChunks);
  Value stateFloatsAll = h.mul(h.ceilDiv(h.mul(tiles, h.c32(stateFloats)), h.c32(64)), h.c32(64)); // 256 B multiple
  Value mapWords = spec.branch == Branch::Selected ? selectionMap().wordsTotal() : h.c64(0);
  Value splitBase = h.gep(p.workspace, h.f32(), mapWords); // after the selection map
  Value tileState = h.gep(splitBase, h.f32(), h.mul(h.ext64(tile), h.c64(stateFloats)));
  Value tileSums = h.gep(splitBase, h.f32(),
                         h.add(h.ext64(stateFloatsAll), h.mul(h.ext64(tile), h.c64(int64_t(C) * rowFloats))));
  OrderedSplitSum sum(h, ids, tileState, scratch);

  // Element (key row, column) pairs of this thread: rows 16 warp + group (+8),
  // columns 8n + 2 tig of dK, then Dk + 8n + 2 tig of dV.
  const int dkValues = 4 * (Dk / 8);
  Value row = h.add(h.mul(ids.warp, h.c32(16)), ids.group);
  Value threadSums = h.gep(tileSums, h.f32(), h.add(h.mul(row, h.c32(rowFloats)), h.mul(ids.tig, h.c32(2))));
  auto pairOffset = [&](size_t i) { // bytes from threadSums
    const int r = int(i % 4) / 2;
    const int col = int(i) < dkValues ? 8 * int(i / 4) : Dk + 8 * ((int(i) - dkValues) / 4);
    return 4 * (8 * r * rowFloats + col);
  };
  // `base` plus the workspace's sum when `holdsData` (the earlier sums first: one fixed order).
  auto plusWorkspace = [&](Value holdsData, ValueRange base) {
    auto op = scf::IfOp::create(
        h.b, h.loc, holdsData,
        [&](OpBuilder &, Location) {
          SmallVector<Value> total(base);
          for (size_t i = 0; i < total.size(); i += 2) {
            auto [a, b] = sum.loadPair(threadSums, pairOffset(i));
            total[i] = h.fadd(a, total[i]);
            total[i + 1] = h.fadd(b, total[i + 1]);
          }
          scf::YieldOp::create(h.b, h.loc, total);
        },
        [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, base); });
    return SmallVector<Value>(op.getResults());
  };
  // A split with work adds its partial after the earlier splits'.
  scf::IfOp::create(h.b, h.loc, contributed, [&](OpBuilder &, Location) {
    SmallVector<Value> total = plusWorkspace(sum.waitForEarlier(split), flatAcc);
    for (size_t i = 0; i < total.size(); i += 2) sum.storePair(threadSums, pairOffset(i), total[i], total[i + 1]);
    scf::YieldOp::create(h.b, h.loc);
  });
  // The last to arrive writes the sum (read back: the partials' registers are
  // free by then, which keeps the kernel from spilling).
  auto [complete, holdsData] = sum.arrive(split, splits, contributed);
  SmallVector<Value> zeros(flatAcc.size(), h.cf(0.0f));
  auto sums = scf::IfOp::create(
      h.b, h.loc, complete, [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, plusWorkspace(holdsData, zeros)); },
      [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, zeros); });
  return {complete, SmallVector<Value>(sums.getResults())};
}

// The selected dK/dV's CTA order: the splits of every head's first key chunk
// first, heads fastest, then the other chunks head by head. The hardware
// starts CTAs in the order (head, batch, x) with x fastest, so the last head's
// first block, which every token selects (the initial block), would start
// last and walk its long splits alone at the end. (All chunks with the
// heads fastest did the same for local indices, but spread the CTAs running
// together over four heads' rows and made random indices slower: selected
// dK/dV, H100, T = 64k, [paper], random / local: 19.4 / 19.9 ms, heads fastest
// 20.7 / 17.8, the first chunk's splits only 19.7 / 17.6; s16run2.)
// A split still starts after the earlier splits of its chunk (OrderedSplitSum).
void BackwardKernelBuilder::startFirstChunksFirst() {
  Value heads = h.ext64(h.mul(h.gridDimY(), h.gridDimZ()));
  Value headRow = h.add(h.ext64(h.blockIdY()), h.mul(h.ext64(h.gridDimY()), h.ext64(h.blockIdZ())));
  Value linear = h.add(h.ext64(h.blockIdX()), h.mul(h.ext64(h.gridDimX()), headRow));
  Value splits = h.ext64(h.maxs(h.divs(h.gridDimX(), h.ceilDiv(p.kvLen, h.c32(C))), h.c32(1)));
  Value firstCtas = h.mul(splits, heads);
  Value inFirst = h.lt(linear, firstCtas);
  Value rest = h.sub(linear, firstCtas);
  Value restX = h.maxs(h.sub(h.ext64(h.gridDimX()), splits), h.c64(1));
  Value headBatch = h.trunc32(h.select(inFirst, h.rems(linear, heads), h.divs(rest, restX)));
  ctaX = h.trunc32(h.select(inFirst, h.divs(linear, heads), h.add(splits, h.rems(rest, restX))));
  kvHead = h.rems(headBatch, h.gridDimY());
  batch = h.divs(headBatch, h.gridDimY());
}

LogicalResult BackwardKernelBuilder::build() {
  OpBuilder &b = h.b;
  gpuModule = b.getInsertionBlock()->getParentOp();
  if (!isa<gpu::GPUModuleOp>(gpuModule))
    return emitError(h.loc, "buildBackwardKernel must be called inside a gpu.module");
  if (spec.pass == KernelPass::Forward)
    return emitError(h.loc, "buildBackwardKernel got a forward spec: ") << spec.str();
  if (W <= 0 || TQ <= 0 || C <= 0 || C % 16 != 0)
    return emitError(h.loc, "incomplete or inconsistent tile configuration: ") << spec.str();
  if (spec.pass == KernelPass::BackwardDKDV && ((TQ * G) % 16 != 0 || C != W * 16))
    return emitError(h.loc, "the dK/dV tile needs tokens x G % 16 == 0 and kv_chunk = warps x 16: ") << spec.str();
  declareSharedMemory(h, gpuModule);

  Block &entry = *createKernelFunction(h, name, kNumTensors + 2, 3 * kNumTensors, 3, W * 32);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&entry);
  auto args = entry.getArguments();
  p.workspace = args[kNumTensors];
  p.tokenDone = args[kNumTensors + 1];
  for (int t = 0; t < kNumTensors; ++t) {
    p.ptr[t] = args[t];
    for (int d = 0; d < 3; ++d) p.stride[t][d] = args[kNumTensors + 2 + 3 * t + d];
  }
  p.seqLen = args[4 * kNumTensors + 2], p.kvLen = args[4 * kNumTensors + 3], p.mapWords = args[4 * kNumTensors + 4];

  ids = ThreadIds::read(h);
  kvHead = h.blockIdY();
  batch = h.blockIdZ();
  ctaX = h.blockIdX();
  if (spec.pass == KernelPass::BackwardDKDV && spec.branch == Branch::Selected)
    startFirstChunksFirst();
  smem = sharedMemoryBase(h, gpuModule);
  gatePresent = h.nonNull(p.ptr[GATE]);
  switch (spec.pass) {
  case KernelPass::BackwardPreprocess: buildPreprocess(); break;
  case KernelPass::BackwardDQ: buildDq(); break;
  case KernelPass::BackwardDKDV: buildDkdv(); break;
  default: return emitError(h.loc, "buildBackwardKernel got a spec of another kernel: ") << spec.str();
  }
  gpu::ReturnOp::create(b, h.loc);
  return success();
}

} // namespace

LogicalResult buildBackwardKernel(OpBuilder &builder, Location loc, const KernelSpec &spec, StringRef name) {
  return BackwardKernelBuilder(builder, loc, spec, name).build();
}

} // namespace nsajit::tpl
