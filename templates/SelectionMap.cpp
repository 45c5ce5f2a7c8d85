#include "SelectionMap.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;

namespace nsajit::tpl {

Value SelectionMap::wordsTotal() {
  Value blocks = h.ext64(h.ceilDiv(p.kvLen, h.c32(spec.slcBlock)));
  Value rows = h.mul(h.mul(h.ext64(h.gridDimZ()), h.ext64(h.gridDimY())), blocks);
  Value words = h.mul(rows, h.ext64(p.words));
  return h.mul(h.divs(h.add(words, h.c64(63)), h.c64(64)), h.c64(64)); // 256-byte multiple
}

Value SelectionMap::word(Value blk, Value w) {
  Value blocks = h.ext64(h.ceilDiv(p.kvLen, h.c32(spec.slcBlock)));
  Value row = h.add(h.mul(h.add(h.mul(h.ext64(p.batch), h.ext64(h.gridDimY())), h.ext64(p.kvHead)), blocks), h.ext64(blk));
  return h.gep(p.workspace, h.i32(), h.add(h.mul(row, h.ext64(p.words)), h.ext64(w)));
}

void SelectionMap::mark(Value t0, int tokens, const IndexFn &indexAt) {
  const int n = spec.slcCount;
  scf::IfOp::create(h.b, h.loc, h.gt(p.words, h.c32(0)), [&](OpBuilder &, Location) {
    scf::ForOp::create(h.b, h.loc, ids.tid, h.c32(tokens * n), h.c32(threads), ValueRange{},
                       [&](OpBuilder &, Location, Value e, ValueRange) {
                         Value t = h.add(t0, h.divs(e, h.c32(n)));
                         scf::IfOp::create(h.b, h.loc, h.lt(t, p.seqLen), [&](OpBuilder &, Location) {
                           Value blk = indexAt(t, h.rems(e, h.c32(n)));
                           // (blk <= t / l', not blk l' <= t: a hostile index must not overflow.)
                           Value visible = h.band(h.ge(blk, h.c32(0)), h.le(blk, h.divs(t, h.c32(spec.slcBlock))));
                           scf::IfOp::create(h.b, h.loc, visible, [&](OpBuilder &, Location) {
                             Value bit = h.shl(h.c32(1), h.rems(t, h.c32(32)));
                             LLVM::AtomicRMWOp::create(h.b, h.loc, LLVM::AtomicBinOp::_or,
                                                       word(blk, h.divs(t, h.c32(32))), bit,
                                                       LLVM::AtomicOrdering::monotonic);
                             scf::YieldOp::create(h.b, h.loc);
                           });
                           scf::YieldOp::create(h.b, h.loc);
                         });
                         scf::YieldOp::create(h.b, h.loc);
                       });
    scf::YieldOp::create(h.b, h.loc);
  });
}

Value SelectionMap::wordBits(Value blk, Value w, const ListedFn &timesListed) {
  Value firstToken = h.mul(w, h.c32(32));
  auto fromMap = scf::IfOp::create(
      h.b, h.loc, h.gt(p.words, h.c32(0)),
      [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, ValueRange{h.load(h.i32(), word(blk, w), 4)}); },
      [&](OpBuilder &, Location) {
        // No map: the word's 32 tokens' index lists (n loads each).
        auto scan = scf::ForOp::create(
            h.b, h.loc, h.c32(0), h.c32(32), h.c32(1), ValueRange{h.c32(0)},
            [&](OpBuilder &, Location, Value j, ValueRange acc) {
              Value t = h.mins(h.add(firstToken, j), h.sub(p.seqLen, h.c32(1)));
              Value listed = h.gt(timesListed(t, blk), h.c32(0));
              Value bit = h.select(listed, h.shl(h.c32(1), j), h.c32(0));
              scf::YieldOp::create(h.b, h.loc, ValueRange{h.bor(acc[0], bit)});
            });
        scf::YieldOp::create(h.b, h.loc, scan.getResults());
      });
  return fromMap.getResult(0);
}

SmallVector<Value> SelectionMap::walk(Value blk, Value tLo, Value tHi, Value warpTotals, Value list, ValueRange init,
                                      const ListedFn &timesListed, const WindowBody &body) {
  const int warps = threads / 32;
  auto popc = [&](Value x) { return LLVM::CtPopOp::create(h.b, h.loc, x).getResult(); };
  Value wordLo = h.divs(tLo, h.c32(32)), wordHi = h.divs(tHi, h.c32(32));
  Value nWords = h.select(h.ge(tHi, tLo), h.add(h.sub(wordHi, wordLo), h.c32(1)), h.c32(0));
  Value windows = h.ceilDiv(nWords, h.c32(threads));
  SmallVector<Value> loopInit(init);
  loopInit.push_back(h.cf(0.0f));
  auto loop = scf::ForOp::create(
      h.b, h.loc, h.c32(0), windows, h.c32(1), loopInit, [&](OpBuilder &, Location, Value w, ValueRange iter) {
        // This thread's word, without the bits of tokens outside tLo..tHi.
        Value windowWord = h.add(wordLo, h.mul(w, h.c32(threads)));
        Value word = h.add(windowWord, ids.tid);
        Value firstToken = h.mul(word, h.c32(32));
        auto load = scf::IfOp::create(
            h.b, h.loc, h.le(word, wordHi),
            [&](OpBuilder &, Location) {
              scf::YieldOp::create(h.b, h.loc, ValueRange{wordBits(blk, word, timesListed)});
            },
            [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, ValueRange{h.c32(0)}); });
        Value bits = h.band(load.getResult(0), h.shl(h.c32(-1), h.maxs(h.sub(tLo, firstToken), h.c32(0))));
        Value keep = h.sub(tHi, firstToken); // >= 0 for every loaded word
        Value highMask = h.select(h.ge(keep, h.c32(31)), h.c32(-1), h.sub(h.shl(h.c32(2), h.mins(keep, h.c32(30))), h.c32(1)));
        bits = h.band(bits, highMask);
        // Exclusive prefix of the counts over the CTA: a warp scan, then the warps' totals.
        Value count = popc(bits), inclusive = count;
        for (int d = 1; d < 32; d *= 2) {
          Value up = h.shflUp(inclusive, d);
          inclusive = h.add(inclusive, h.select(h.ge(ids.lane, h.c32(d)), up, h.c32(0)));
        }
        scf::IfOp::create(h.b, h.loc, h.eq(ids.lane, h.c32(31)), [&](OpBuilder &, Location) {
          h.store(inclusive, h.gep(warpTotals, h.i32(), ids.warp), 4);
          scf::YieldOp::create(h.b, h.loc);
        });
        h.barrier();
        Value before = h.c32(0), total = h.c32(0);
        for (int j = 0; j < warps; ++j) {
          Value t = h.load(h.i32(), h.gep(warpTotals, h.i32(), h.c32(j)), 4);
          before = h.add(before, h.select(h.lt(h.c32(j), ids.warp), t, h.c32(0)));
          total = h.add(total, t);
        }
        // This thread's tokens, in order, at their places in the list.
        Value base = h.add(before, h.sub(inclusive, count));
        scf::WhileOp::create(
            h.b, h.loc, TypeRange{h.i32(), h.i32()}, ValueRange{bits, base},
            [&](OpBuilder &, Location, ValueRange st) {
              scf::ConditionOp::create(h.b, h.loc, h.ne(st[0], h.c32(0)), st);
            },
            [&](OpBuilder &, Location, ValueRange st) {
              Value bit = LLVM::CountTrailingZerosOp::create(h.b, h.loc, h.i32(), st[0], false).getResult();
              Value entry = h.add(h.mul(ids.tid, h.c32(32)), bit);
              h.store(arith::TruncIOp::create(h.b, h.loc, h.i16(), entry).getResult(), h.gep(list, h.i16(), st[1]), 2);
              Value rest = h.band(st[0], h.sub(st[0], h.c32(1)));
              scf::YieldOp::create(h.b, h.loc, ValueRange{rest, h.add(st[1], h.c32(1))});
            });
        h.barrier();
        SmallVector<Value> acc = body(total, h.mul(windowWord, h.c32(32)), iter.drop_back());
        h.barrier(); // the list and the totals are rewritten by the next window
        acc.push_back(h.select(h.gt(total, h.c32(0)), h.cf(1.0f), iter.back()));
        scf::YieldOp::create(h.b, h.loc, acc);
      });
  return SmallVector<Value>(loop.getResults());
}

Value SelectionMap::entriesBefore(Value list, Value count, Value firstToken, Value token) {
  // Entries are below 32 x threads; the largest power of two not above that
  // starts the descent, so `before` can reach every count.
  Value offset = h.sub(token, firstToken);
  Value before = h.c32(0);
  int top = 1;
  while (2 * top <= 32 * threads) top *= 2;
  for (int stride = top; stride >= 1; stride /= 2) {
    Value next = h.add(before, h.c32(stride));
    Value inList = h.le(next, count);
    Value entry = h.load(h.i16(), h.gep(list, h.i16(), h.select(inList, h.sub(next, h.c32(1)), h.c32(0))), 2);
    Value below = h.band(inList, h.lt(h.zext32(entry), offset));
    before = h.select(below, next, before);
  }
  return before;
}

} // namespace nsajit::tpl
