// nsajit_prepare: compiles (or loads from the caches) and loads every kernel a
// configuration needs (the forward and backward of each branch, the fused
// top-n, the pooling kernels), many at once on a thread pool, so that a new
// configuration is ready in the time of its slowest kernel rather than the sum.
#pragma once

#include "Context.h"

#include <functional>
#include <string>
#include <vector>

namespace nsajit::rt {

// The kernels of `config` selected by `flags` (NSAJIT_PREPARE_*), with the tiles
// later launches will use (tuned tiles at batch x seqLen when there are some;
// seqLen 0: default tiles).
std::vector<KernelSpec> kernelsOfConfig(const nsajit_context &ctx, const nsajit_config *config, unsigned flags,
                                        int batch, int seqLen, Arch arch);

// Called after each kernel: done of total, the kernel's spec, the seconds it took (< 0: it failed).
using PrepareProgress = std::function<void(int done, int total, const KernelSpec &spec, double seconds)>;

// Loads every kernel with up to `threads` at once (0: compileThreads()). Throws the
// first failure after all kernels were tried. Returns the number of kernels.
int prepareKernels(nsajit_context &ctx, const std::vector<KernelSpec> &specs, int threads,
                   const PrepareProgress &progress);

} // namespace nsajit::rt
