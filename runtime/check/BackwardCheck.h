// One backward check: a case's forward on the GPU, then the branch's backward
// through the C API (with a random gate or none), against the float64
// reference gradients dq, dk, dv and dgate.
#pragma once

#include "ForwardCheck.h"

namespace nsajit::check {

struct BackwardPrepared {
  Prepared fwd;
  bool gated = false;
  std::vector<float> gate, dout;                    // [B,T,HQ], [B,T,HQ,Dv] (dtype-rounded)
  std::vector<double> refDq, refDk, refDv, refDgate;
};

struct BackwardOutcome {
  bool ok = false;
  double errDq = 0, errDk = 0, errDv = 0, errDgate = 0;
  std::string error;
};

BackwardPrepared prepareBackward(const Case &c, bool gated);
BackwardOutcome runBackwardOnGpu(Device &dev, nsajit_context *ctx, const BackwardPrepared &p);

} // namespace nsajit::check
