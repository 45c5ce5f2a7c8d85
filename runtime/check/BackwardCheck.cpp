#include "BackwardCheck.h"

#include "runtime/reference/Reference.h"

#include <cmath>
#include <random>

namespace nsajit::check {

BackwardPrepared prepareBackward(const Case &c, bool gated) {
  BackwardPrepared bp;
  bp.fwd = prepare(c);
  bp.gated = gated;
  std::mt19937 rng(c.seed * 7919u + 17u);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f), sym(-1.0f, 1.0f);
  const std::size_t rows = std::size_t(c.b) * c.t * c.hq();
  if (gated) {
    bp.gate.resize(rows);
    for (float &g : bp.gate) g = unit(rng);
  }
  bp.dout.resize(rows * c.dv);
  for (float &x : bp.dout) x = c.fp16 ? ref::roundToFp16(sym(rng)) : ref::roundToBf16(sym(rng));
  const Prepared &p = bp.fwd;
  ref::Dims dims{c.b, c.t, c.h, c.g, c.dk, c.dv};
  switch (c.branch) {
  case Br::Cmp:
    ref::compressedAttentionBackward(dims, c.l, c.d, p.scale, p.q.values, p.k.values, p.v.values, bp.gate, bp.dout,
                                     bp.refDq, bp.refDk, bp.refDv, bp.refDgate);
    break;
  case Br::Slc:
    ref::selectedAttentionBackward(dims, c.lsel, c.n, p.scale, p.q.values, p.k.values, p.v.values, p.idx, bp.gate,
                                   bp.dout, bp.refDq, bp.refDk, bp.refDv, bp.refDgate);
    break;
  case Br::Swa:
    ref::windowAttentionBackward(dims, c.w, p.scale, p.q.values, p.k.values, p.v.values, bp.gate, bp.dout, bp.refDq,
                                 bp.refDk, bp.refDv, bp.refDgate);
    break;
  }
  return bp;
}

BackwardOutcome runBackwardOnGpu(Device &dev, nsajit_context *ctx, const BackwardPrepared &bp) {
  const Prepared &p = bp.fwd;
  const Case &c = p.c;
  BackwardOutcome r;
  DeviceCase d(dev, p);
  r.error = d.forward(ctx);
  if (!r.error.empty())
    return r;

  const std::size_t rows = std::size_t(c.b) * c.t * c.hq();
  HostTensor doutT, dq, dk, dv;
  doutT.shape(c.b, c.t, c.hq(), c.dv, c.padded);
  doutT.values = bp.dout;
  dq.shape(c.b, c.t, c.hq(), c.dk, c.padded);
  dk.shape(c.b, c.kvLen(), c.h, c.dk, c.padded);
  dv.shape(c.b, c.kvLen(), c.h, c.dv, c.padded);
  Buffer dOut(dev, doutT.storageElems() * 2), gate(dev, rows * 4), delta(dev, rows * 4), dgate(dev, rows * 4);
  Buffer dqB(dev, dq.storageElems() * 2), dkB(dev, dk.storageElems() * 2), dvB(dev, dv.storageElems() * 2);
  dOut.upload(doutT.pack(c.fp16));
  if (bp.gated) gate.upload(bp.gate);
  for (Buffer *b : {&dqB, &dkB, &dvB, &dgate, &delta}) dev.fill(b->ptr, 0xFF, b->bytes); // NaN poison

  nsajit_tensor tdo = doutT.view(dOut.ptr), tg = d.rowTensor(gate.ptr), tdelta = d.rowTensor(delta.ptr);
  nsajit_tensor tdg = d.rowTensor(dgate.ptr), tdq = dq.view(dqB.ptr), tdk = dk.view(dkB.ptr), tdv = dv.view(dvB.ptr);
  const nsajit_tensor *g = bp.gated ? &tg : nullptr, *dg = bp.gated ? &tdg : nullptr;
  nsajit_status st = NSAJIT_OK;
  switch (c.branch) {
  case Br::Cmp:
    st = nsajit_compressed_backward(ctx, &d.cfg, c.b, c.t, &d.tq, &d.tk, &d.tv, &d.to, &d.tl, &tdo, g, &tdelta, &tdq,
                                    &tdk, &tdv, dg, nullptr);
    break;
  case Br::Slc:
    st = nsajit_selected_backward(ctx, &d.cfg, c.b, c.t, &d.tq, &d.tk, &d.tv, &d.ti, &d.to, &d.tl, &tdo, g, &tdelta,
                                  &tdq, &tdk, &tdv, dg, nullptr);
    break;
  case Br::Swa:
    st = nsajit_window_backward(ctx, &d.cfg, c.b, c.t, &d.tq, &d.tk, &d.tv, &d.to, &d.tl, &tdo, g, &tdelta, &tdq, &tdk,
                                &tdv, dg, nullptr);
    break;
  }
  if (st != NSAJIT_OK) {
    r.error = std::string(nsajit_status_string(st)) + ": " + nsajit_last_error();
    return r;
  }
  dev.synchronize();
  auto grab = [&](HostTensor &t, Buffer &b) { return t.unpack(b.download<std::uint16_t>(t.storageElems()), c.fp16); };
  r.errDq = relativeErrorOrAbs(grab(dq, dqB), bp.refDq);
  r.errDk = relativeErrorOrAbs(grab(dk, dkB), bp.refDk);
  r.errDv = relativeErrorOrAbs(grab(dv, dvB), bp.refDv);
  if (bp.gated)
    r.errDgate = relativeErrorOrAbs(dgate.download<float>(rows), bp.refDgate);
  const double tol = c.fp16 ? 1e-2 : 2e-2;
  for (double e : {r.errDq, r.errDk, r.errDv, r.errDgate})
    if (!(std::isfinite(e) && e <= tol)) {
      r.error = "outside tolerance (relative " + std::to_string(tol) + ")";
      return r;
    }
  r.ok = true;
  return r;
}

} // namespace nsajit::check
