#include "SelectedBlockUnion.h"

#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "llvm/Support/ErrorHandling.h"

#include <limits>

using namespace mlir;

namespace nsajit::tpl {
namespace {
int roundUp16(int bytes) { return (bytes + 15) / 16 * 16; }
} // namespace

// Scratch layout: raw[N] (the tokens' lists, invalid entries -1), first[N] (1 where
// the entry is the first occurrence of its block in the CTA), list[N] (distinct
// blocks, ascending), mult[N][tokens] (bytes), count.

SelectedBlockUnion::SelectedBlockUnion(IRBuilderHelpers &h, const ThreadIds &ids, int threads, Value smem,
                                       Value byteBase, const KernelSpec &spec, int tokens,
                                       std::function<void()> barrier)
    : h(h), ids(ids), threads(threads), smem(smem), base(byteBase), T(tokens), n(spec.slcCount), N(tokens * n),
      blockSize(spec.slcBlock), barrier(barrier ? std::move(barrier) : std::function<void()>([helpers = &h] { helpers->barrier(); })) {
  rawOff = 0;
  firstOff = rawOff + roundUp16(4 * N);
  listOff = firstOff + roundUp16(4 * N);
  multOff = listOff + roundUp16(4 * N);
  countOff = multOff + roundUp16(N * T);
  // The launcher sizes shared memory with selectedUnionSharedBytes: the layouts must agree.
  if (countOff + 16 != selectedUnionSharedBytes(T, n))
    llvm::report_fatal_error("SelectedBlockUnion: scratch layout differs from selectedUnionSharedBytes");
}

Value SelectedBlockUnion::at(int region, Value i) {
  return h.gep(h.gep(smem, h.b.getI8Type(), h.add(base, h.c32(region))), h.i32(), i);
}

void SelectedBlockUnion::forItems(int count, const std::function<void(Value)> &body) {
  scf::ForOp::create(h.b, h.loc, ids.tid, h.c32(count), h.c32(threads), ValueRange{},
                     [&](OpBuilder &, Location, Value i, ValueRange) {
                       body(i);
                       scf::YieldOp::create(h.b, h.loc);
                     });
}

Value SelectedBlockUnion::countIf(Value lo, Value hi, const std::function<Value(Value, Value)> &pred) {
  auto loop = scf::ForOp::create(h.b, h.loc, lo, hi, h.c32(1), ValueRange{h.c32(0)},
                                 [&](OpBuilder &, Location, Value j, ValueRange acc) {
                                   Value hit = pred(j, ld(rawOff, j));
                                   scf::YieldOp::create(h.b, h.loc, h.add(acc[0], h.zext32(hit)));
                                 });
  return loop.getResult(0);
}

void SelectedBlockUnion::build(BranchKeys::IndexInput idx, Value batch, Value kvHead, Value t0, Value seqLen,
                               Value kvLen, Value limit, Value bitmapBytes,
                               const std::function<void(Value)> &counted) {
  bitmap = bitmapBytes;
  afterCount = counted;
  // 1. The raw lists, with entries that contribute nothing replaced by -1; the
  // multiplicity table and the count start at zero.
  forItems(N, [&](Value i) {
    Value t = h.add(t0, h.divs(i, h.c32(n)));
    Value tokOk = h.lt(t, seqLen);
    Value tSafe = h.select(tokOk, t, t0);
    Value off = h.add(h.add(h.mul(h.ext64(batch), idx.strides[0]), h.mul(h.ext64(tSafe), idx.strides[1])),
                      h.add(h.mul(h.ext64(kvHead), idx.strides[2]), h.ext64(h.rems(i, h.c32(n)))));
    Value j = h.load(h.i32(), h.gep(idx.ptr, h.i32(), off), 4);
    // Compared as block numbers: j * l' may overflow for a hostile j.
    Value lastBlock = h.divs(h.sub(h.mins(kvLen, h.add(t, h.c32(1))), h.c32(1)), h.c32(blockSize));
    Value ok = h.band(tokOk, h.band(h.ge(j, h.c32(0)), h.le(j, lastBlock)));
    st(rawOff, i, h.select(ok, j, h.c32(-1)));
  });
  forItems(roundUp16(N * T) / 4, [&](Value i) { st(multOff, i, h.c32(0)); });
  if (bitmap)
    forItems(kUnionBitmapWords, [&](Value w) { h.store(h.c32(0), bitmapWord(w), 4); });
  scf::IfOp::create(h.b, h.loc, h.eq(ids.tid, h.c32(0)), [&](OpBuilder &, Location) {
    st(countOff, h.c32(0), h.c32(0));
    scf::YieldOp::create(h.b, h.loc);
  });
  barrier();
  // Pairwise: count the first occurrences, then list the union (a union past
  // the limit is only counted; uniform branches: every thread reads the count).
  auto pairwise = [&] {
    firstOccurrences();
    if (afterCount)
      afterCount(count());
    if (!limit) {
      buildList();
      return;
    }
    scf::IfOp::create(h.b, h.loc, h.le(count(), limit), [&](OpBuilder &, Location) {
      buildList();
      scf::YieldOp::create(h.b, h.loc);
    });
  };
  // The bitmap builds it in a few steps a thread where the tile's blocks fit it
  // (the pairwise build costs a thread O(N) steps, at every tile's start of the
  // warp-specialised kernel: s12run4).
  if (!limit || !bitmap || threads != 128) {
    pairwise();
    return;
  }
  Value tEnd = h.mins(seqLen, h.add(t0, h.c32(T)));
  Value lastTileBlock = h.divs(h.sub(h.mins(kvLen, tEnd), h.c32(1)), h.c32(blockSize));
  Value fits = h.lt(lastTileBlock, h.c32(32 * kUnionBitmapWords));
  scf::IfOp::create(
      h.b, h.loc, fits,
      [&](OpBuilder &, Location) {
        buildFromBitmap(limit);
        scf::YieldOp::create(h.b, h.loc);
      },
      [&](OpBuilder &, Location) {
        pairwise();
        scf::YieldOp::create(h.b, h.loc);
      });
}

void SelectedBlockUnion::buildFromBitmap(Value limit) {
  // 1. One bit a distinct block.
  forItems(N, [&](Value i) {
    Value v = ld(rawOff, i);
    scf::IfOp::create(h.b, h.loc, h.ge(v, h.c32(0)), [&](OpBuilder &, Location) {
      LLVM::AtomicRMWOp::create(h.b, h.loc, LLVM::AtomicBinOp::_or, bitmapWord(h.divs(v, h.c32(32))),
                                h.shl(h.c32(1), h.rems(v, h.c32(32))), LLVM::AtomicOrdering::monotonic);
      scf::YieldOp::create(h.b, h.loc);
    });
  });
  barrier();
  // 2. Each word's rank, a prefix sum of the set bits: a thread's words, its
  // warp's scan (shuffles), the earlier warps' totals; the total is the count.
  constexpr int perThread = kUnionBitmapWords / 128, warps = 128 / 32;
  Value lane = h.rems(ids.tid, h.c32(32)), warp = h.divs(ids.tid, h.c32(32));
  auto popc = [&](Value x) { return LLVM::CtPopOp::create(h.b, h.loc, x).getResult(); };
  Value first = h.mul(ids.tid, h.c32(perThread));
  Value mine = h.c32(0);
  for (int k = 0; k < perThread; ++k)
    mine = h.add(mine, popc(h.load(h.i32(), bitmapWord(h.add(first, h.c32(k))), 4)));
  Value scan = mine;
  for (int d = 1; d < 32; d *= 2) {
    Value up = h.shflUp(scan, d);
    scan = h.select(h.ge(lane, h.c32(d)), h.add(scan, up), scan);
  }
  scf::IfOp::create(h.b, h.loc, h.eq(lane, h.c32(31)), [&](OpBuilder &, Location) {
    h.store(scan, bitmapWord(warp, 2), 4);
    scf::YieldOp::create(h.b, h.loc);
  });
  barrier();
  Value before = h.sub(scan, mine), total = h.c32(0);
  for (int w = 0; w < warps; ++w) {
    Value t = h.load(h.i32(), bitmapWord(h.c32(w), 2), 4);
    before = h.add(before, h.select(h.lt(h.c32(w), warp), t, h.c32(0)));
    total = h.add(total, t);
  }
  for (int k = 0; k < perThread; ++k) {
    Value w = h.add(first, h.c32(k));
    h.store(before, bitmapWord(w, 1), 4);
    before = h.add(before, popc(h.load(h.i32(), bitmapWord(w), 4)));
  }
  scf::IfOp::create(h.b, h.loc, h.eq(ids.tid, h.c32(0)), [&](OpBuilder &, Location) {
    st(countOff, h.c32(0), total);
    scf::YieldOp::create(h.b, h.loc);
  });
  barrier();
  if (afterCount)
    afterCount(total);
  // 3. Within the limit: the list (each thread the set bits of its words, in
  // order from their ranks) and the multiplicities (each entry adds one to its
  // token's byte of its block's rank; a byte holds at most n).
  scf::IfOp::create(h.b, h.loc, h.le(total, limit), [&](OpBuilder &, Location) {
    for (int k = 0; k < perThread; ++k) {
      Value w = h.add(first, h.c32(k));
      Value bits = h.load(h.i32(), bitmapWord(w), 4), rank = h.load(h.i32(), bitmapWord(w, 1), 4);
      scf::ForOp::create(h.b, h.loc, h.c32(0), h.c32(32), h.c32(1), ValueRange{rank},
                         [&](OpBuilder &, Location, Value b, ValueRange acc) {
                           Value set = h.ne(h.band(h.shrui(bits, b), h.c32(1)), h.c32(0));
                           scf::IfOp::create(h.b, h.loc, set, [&](OpBuilder &, Location) {
                             st(listOff, acc[0], h.add(h.mul(w, h.c32(32)), b));
                             scf::YieldOp::create(h.b, h.loc);
                           });
                           scf::YieldOp::create(h.b, h.loc, ValueRange{h.add(acc[0], h.zext32(set))});
                         });
    }
    forItems(N, [&](Value i) {
      Value v = ld(rawOff, i);
      scf::IfOp::create(h.b, h.loc, h.ge(v, h.c32(0)), [&](OpBuilder &, Location) {
        Value w = h.divs(v, h.c32(32));
        Value below = h.sub(h.shl(h.c32(1), h.rems(v, h.c32(32))), h.c32(1));
        Value u = h.add(h.load(h.i32(), bitmapWord(w, 1), 4),
                        popc(h.band(h.load(h.i32(), bitmapWord(w), 4), below)));
        Value cell = h.add(h.mul(u, h.c32(T)), h.divs(i, h.c32(n)));
        Value byteInWord = h.mul(h.rems(cell, h.c32(4)), h.c32(8));
        Value word = h.gep(h.gep(smem, h.b.getI8Type(), h.add(base, h.c32(multOff))), h.i32(), h.divs(cell, h.c32(4)));
        LLVM::AtomicRMWOp::create(h.b, h.loc, LLVM::AtomicBinOp::add, word, h.shl(h.c32(1), byteInWord),
                                  LLVM::AtomicOrdering::monotonic);
        scf::YieldOp::create(h.b, h.loc);
      });
    });
    barrier();
    scf::YieldOp::create(h.b, h.loc);
  });
}

void SelectedBlockUnion::firstOccurrences() {
  // 2. First occurrences in the whole CTA; each adds one to the count.
  forItems(N, [&](Value i) {
    Value v = ld(rawOff, i);
    Value earlier = countIf(h.c32(0), i, [&](Value, Value r) { return h.eq(r, v); });
    Value first = h.band(h.ge(v, h.c32(0)), h.eq(earlier, h.c32(0)));
    st(firstOff, i, h.zext32(first));
    scf::IfOp::create(h.b, h.loc, first, [&](OpBuilder &, Location) {
      LLVM::AtomicRMWOp::create(h.b, h.loc, LLVM::AtomicBinOp::add, at(countOff, h.c32(0)), h.c32(1),
                                LLVM::AtomicOrdering::monotonic);
      scf::YieldOp::create(h.b, h.loc);
    });
  });
  barrier();
}

void SelectedBlockUnion::buildList() {
  // 3. The rank of each valid entry's block among the distinct blocks; the first
  // occurrence writes the list, the first occurrence inside a token's own list
  // writes that token's multiplicity.
  forItems(N, [&](Value i) {
    Value v = ld(rawOff, i);
    scf::IfOp::create(h.b, h.loc, h.ge(v, h.c32(0)), [&](OpBuilder &, Location) {
      // Distinct blocks below v: its rank.
      Value below = countIf(h.c32(0), h.c32(N), [&](Value j, Value r) {
        return h.band(h.ne(ld(firstOff, j), h.c32(0)), h.lt(r, v));
      });
      Value isFirst = h.ne(ld(firstOff, i), h.c32(0));
      scf::IfOp::create(h.b, h.loc, isFirst, [&](OpBuilder &, Location) {
        st(listOff, below, v);
        scf::YieldOp::create(h.b, h.loc);
      });
      Value tokenInCta = h.divs(i, h.c32(n));
      Value listStart = h.mul(tokenInCta, h.c32(n));
      Value earlierInList = countIf(listStart, i, [&](Value, Value r) { return h.eq(r, v); });
      scf::IfOp::create(h.b, h.loc, h.eq(earlierInList, h.c32(0)), [&](OpBuilder &, Location) {
        Value times = countIf(i, h.add(listStart, h.c32(n)), [&](Value, Value r) { return h.eq(r, v); });
        Value cell = h.add(h.mul(below, h.c32(T)), tokenInCta);
        Value p = h.gep(h.gep(smem, h.b.getI8Type(), h.add(base, h.c32(multOff))), h.b.getI8Type(), cell);
        h.store(arith::TruncIOp::create(h.b, h.loc, h.b.getI8Type(), times), p, 1);
        scf::YieldOp::create(h.b, h.loc);
      });
      scf::YieldOp::create(h.b, h.loc);
    });
  });
  barrier();
}

Value SelectedBlockUnion::count() { return ld(countOff, h.c32(0)); }

Value SelectedBlockUnion::block(Value u) { return ld(listOff, u); }

Value SelectedBlockUnion::multiplicity(Value u, Value tokenInCta) {
  Value cell = h.add(h.mul(u, h.c32(T)), tokenInCta);
  Value p = h.gep(h.gep(smem, h.b.getI8Type(), h.add(base, h.c32(multOff))), h.b.getI8Type(), cell);
  return h.zext32(h.load(h.b.getI8Type(), p, 1));
}

std::pair<std::array<Value, 2>, Value> SelectedBlockUnion::rowBias(Value u, const Value rowInWarp[2], int group) {
  std::array<Value, 2> bias;
  Value takesPart = h.cbool(false);
  for (int r = 0; r < 2; ++r) {
    Value inTile = h.lt(rowInWarp[r], h.c32(T * group));
    Value tokenInCta = h.select(inTile, h.divs(rowInWarp[r], h.c32(group)), h.c32(0));
    Value m = h.select(inTile, multiplicity(u, tokenInCta), h.c32(0));
    Value mf = arith::SIToFPOp::create(h.b, h.loc, h.f32(), m);
    bias[r] = h.select(h.eq(m, h.c32(0)), h.cf(-std::numeric_limits<float>::infinity()),
                       h.select(h.eq(m, h.c32(1)), h.cf(0.0f), h.log2(mf)));
    takesPart = h.bor(takesPart, h.gt(m, h.c32(0)));
  }
  Value any = NVVM::VoteSyncOp::create(h.b, h.loc, h.i1(), h.c32(-1), takesPart,
                                       NVVM::VoteSyncKindAttr::get(h.b.getContext(), NVVM::VoteSyncKind::any));
  return {bias, any};
}

} // namespace nsajit::tpl
