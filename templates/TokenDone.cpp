#include "TokenDone.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;

namespace nsajit::tpl {

Value TokenDone::at(Value t) {
  Value row = h.add(h.mul(h.ext64(batch), h.ext64(h.gridDimY())), h.ext64(kvHead));
  return h.gep(flags, h.b.getI8Type(), h.add(h.mul(row, h.ext64(seqLen)), h.ext64(t)));
}

void TokenDone::mark(const ThreadIds &ids, Value t0, int tokens, Value computed) {
  scf::IfOp::create(h.b, h.loc, present(), [&](OpBuilder &, Location) {
    Value t = h.add(t0, ids.tid);
    scf::IfOp::create(h.b, h.loc, h.band(h.lt(ids.tid, h.c32(tokens)), h.lt(t, seqLen)), [&](OpBuilder &, Location) {
      h.store(arith::TruncIOp::create(h.b, h.loc, h.b.getI8Type(), h.zext32(computed)), at(t), 1);
      scf::YieldOp::create(h.b, h.loc);
    });
    scf::YieldOp::create(h.b, h.loc);
  });
}

Value TokenDone::allDone(Value t0, int tokens) {
  auto done = scf::IfOp::create(
      h.b, h.loc, present(),
      [&](OpBuilder &, Location) {
        auto all = scf::ForOp::create(
            h.b, h.loc, h.c32(0), h.c32(tokens), h.c32(1), ValueRange{h.cbool(true)},
            [&](OpBuilder &, Location, Value k, ValueRange acc) {
              Value t = h.add(t0, k);
              Value inSeq = h.lt(t, seqLen);
              Value flag = h.load(h.b.getI8Type(), at(h.select(inSeq, t, t0)), 1);
              Value done = h.bor(h.bnot(inSeq), h.ne(h.zext32(flag), h.c32(0)));
              scf::YieldOp::create(h.b, h.loc, ValueRange{h.band(acc[0], done)});
            });
        scf::YieldOp::create(h.b, h.loc, all.getResults());
      },
      [&](OpBuilder &, Location) { scf::YieldOp::create(h.b, h.loc, ValueRange{h.cbool(false)}); });
  return done.getResult(0);
}

} // namespace nsajit::tpl
