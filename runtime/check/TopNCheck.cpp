#include "TopNCheck.h"

#include "runtime/reference/Reference.h"

#include <algorithm>
#include <cmath>

namespace nsajit::check {

TopNPrepared prepareTopN(const Case &c, int initial, int local) {
  TopNPrepared tp;
  tp.fwd = prepare(c);
  tp.initial = initial, tp.local = local;
  const Prepared &p = tp.fwd;
  ref::Dims dims{c.b, c.t, c.h, c.g, c.dk, c.dv};
  ref::selectTopN(dims, c.l, c.d, c.lsel, c.n, p.scale, p.q.values, p.k.values, tp.refIdx, initial, local);
  std::vector<double> pcmp, pslc;
  ref::compressedProbabilities(dims, c.l, c.d, p.scale, p.q.values, p.k.values, pcmp);
  ref::blockImportance(dims, c.l, c.d, c.lsel, pcmp, pslc);
  ref::sharedBlockScores(dims, ref::numSelectionBlocks(c.t, c.lsel), pslc, tp.shared);
  return tp;
}

TopNOutcome runTopNOnGpu(Device &dev, nsajit_context *ctx, const TopNPrepared &tp) {
  const Prepared &p = tp.fwd;
  const Case &c = p.c;
  TopNOutcome r;
  DeviceCase d(dev, p);
  r.error = d.forward(ctx);
  if (!r.error.empty())
    return r;
  d.cfg.slc_initial = tp.initial, d.cfg.slc_local = tp.local;
  Buffer idx(dev, tp.refIdx.size() * 4);
  dev.fill(idx.ptr, 0x7F, idx.bytes); // poison: every index must be written
  nsajit_tensor ti = {idx.ptr, std::int64_t(c.t) * c.h * c.n, std::int64_t(c.h) * c.n, c.n};
  nsajit_status st = nsajit_select_topn(ctx, &d.cfg, c.b, c.t, &d.tq, &d.tk, &d.tl, &ti, nullptr);
  if (st != NSAJIT_OK) {
    r.error = std::string(nsajit_status_string(st)) + ": " + nsajit_last_error();
    return r;
  }
  dev.synchronize();
  std::vector<std::int32_t> got = idx.download<std::int32_t>(tp.refIdx.size());
  const int NB = ref::numSelectionBlocks(c.t, c.lsel);
  for (std::size_t row = 0; row * c.n < got.size(); ++row) {
    const std::int32_t *g0 = got.data() + row * c.n, *r0 = tp.refIdx.data() + row * c.n;
    if (std::equal(g0, g0 + c.n, r0))
      continue;
    ++r.mismatches;
    // A near tie: every differing block scores within 1e-5 of the weakest reference pick.
    const double *scores = &tp.shared[row * NB];
    const int t = static_cast<int>((row / c.h) % c.t), jt = t / c.lsel;
    auto forced = [&](int j) { return j < tp.initial || j > jt - tp.local; };
    double weakest = INFINITY;
    for (int k = 0; k < c.n; ++k)
      if (r0[k] >= 0 && !forced(r0[k])) weakest = std::min(weakest, scores[r0[k]]);
    bool tie = true;
    for (int k = 0; k < c.n; ++k) {
      int j = g0[k];
      bool inRef = std::find(r0, r0 + c.n, j) != r0 + c.n;
      if (inRef) continue;
      if (j < 0 || j >= NB || std::fabs(scores[j] - weakest) > 1e-5 * std::max(1e-30, std::fabs(weakest)))
        tie = false;
    }
    r.nearTies += tie;
  }
  r.ok = r.mismatches == r.nearTies;
  if (!r.ok)
    r.error = std::to_string(r.mismatches - r.nearTies) + " rows select different blocks than the reference";
  return r;
}

} // namespace nsajit::check
