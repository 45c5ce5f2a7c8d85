// One check of the fused block scoring + top-n kernel: the compressed forward
// on the GPU (for its lse), then the top-n kernel, against the float64
// reference selection (eqs. 9-12). Indices must match exactly, except where the
// reference's own block scores tie within float precision (reported apart).
#pragma once

#include "ForwardCheck.h"

namespace nsajit::check {

struct TopNPrepared {
  Prepared fwd;                    // a compressed-branch case (q, kc, vc)
  int initial = 1, local = 2;
  std::vector<std::int32_t> refIdx; // [B, T, H, n]
  std::vector<double> shared;       // reference block scores [B, T, H, NB]
};

struct TopNOutcome {
  bool ok = false;
  long mismatches = 0;   // rows whose index set differs from the reference
  long nearTies = 0;     // of those, rows explained by reference scores equal within 1e-5 (relative)
  std::string error;
};

// c.branch must be Br::Cmp; c.lsel and c.n give the selection.
TopNPrepared prepareTopN(const Case &c, int initial, int local);
TopNOutcome runTopNOnGpu(Device &dev, nsajit_context *ctx, const TopNPrepared &p);

} // namespace nsajit::check
