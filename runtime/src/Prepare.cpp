#include "Prepare.h"

#include "Combine.h"
#include "Compress.h"
#include "TopN.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>

namespace nsajit::rt {

std::vector<KernelSpec> kernelsOfConfig(const nsajit_context &ctx, const nsajit_config *config, unsigned flags,
                                        int batch, int seqLen, Arch arch) {
  const unsigned known = NSAJIT_PREPARE_ALL | NSAJIT_PREPARE_WEIGHTED_POOL;
  if (flags == 0 || (flags & ~known) != 0)
    invalidArgument("flags = {:#x} is not a non-empty combination of NSAJIT_PREPARE_FORWARD (1), _BACKWARD (2), "
                    "_SELECTION (4), _COMPRESSION (8), _WEIGHTED_POOL (16)",
                    flags);
  nsajit_config c = readConfig(config);
  std::vector<KernelSpec> specs;
  for (Branch b : {Branch::Compressed, Branch::Selected, Branch::Window}) {
    if (flags & NSAJIT_PREPARE_FORWARD) {
      KernelSpec s = specFromConfig(&c, b, arch);
      const bool defaultTile = !c.tile_warps && !c.tile_tokens && !c.tile_kv_chunk;
      if (defaultTile)
        if (std::optional<KernelSpec> first = selectedFirstKernel(ctx, s))
          specs.push_back(*first); // the two-kernel schedule's
      if (defaultTile && seqLen > 0)
        if (std::optional<TileConfig> t = tunedTile(ctx, s, std::max(batch, 1), seqLen))
          s.tile = *t;
      specs.push_back(s);
    }
    if (flags & NSAJIT_PREPARE_BACKWARD)
      for (KernelPass p : {KernelPass::BackwardPreprocess, KernelPass::BackwardDQ, KernelPass::BackwardDKDV}) {
        KernelSpec s = specFromConfig(&c, b, arch, p);
        if (p == KernelPass::BackwardDQ && !c.tile_tokens)
          if (std::optional<KernelSpec> first = selectedFirstKernel(ctx, s))
            specs.push_back(*first); // the dQ two-kernel schedule's
        specs.push_back(s);
      }
  }
  auto addUnique = [&](const KernelSpec &s) {
    if (std::find(specs.begin(), specs.end(), s) == specs.end())
      specs.push_back(s);
  };
  if (flags & NSAJIT_PREPARE_FORWARD)
    addUnique(combineSpec(&c, arch)); // nsa_attention's gated sum of the branches
  if (flags & NSAJIT_PREPARE_BACKWARD) {
    nsajit_config dq = c; // and the sum of their dq (no gates), Dk wide
    dq.head_dim_v = c.head_dim_qk;
    addUnique(combineSpec(&dq, arch));
  }
  if (flags & NSAJIT_PREPARE_SELECTION)
    specs.push_back(topNSpec(&c, arch));
  // Pooling of k (dim Dk) and v (dim Dv): one set of kernels when Dk = Dv.
  auto addPooling = [&](bool weighted, std::initializer_list<KernelPass> passes) {
    for (int dim : {c.head_dim_qk, c.head_dim_v})
      for (KernelPass p : passes)
        addUnique(poolSpec(&c, dim, weighted, arch, p));
  };
  if (flags & NSAJIT_PREPARE_COMPRESSION)
    addPooling(false, {KernelPass::Compress, KernelPass::CompressBackward});
  if (flags & NSAJIT_PREPARE_WEIGHTED_POOL)
    addPooling(true, {KernelPass::Compress, KernelPass::CompressBackward, KernelPass::CompressWeightGrad});
  return specs;
}

int prepareKernels(nsajit_context &ctx, const std::vector<KernelSpec> &specs, int threads,
                   const PrepareProgress &progress) {
  const int total = static_cast<int>(specs.size());
  // Kernels whose machine code is cached load on this thread (a thread pool would only
  // add its start-up to a few milliseconds); the others compile (PTX, then the driver's
  // JIT) on the pool.
  std::vector<int> cached, missing;
  for (int i = 0; i < total; ++i)
    (ctx.kernels->warm(specs[static_cast<std::size_t>(i)]) ? cached : missing).push_back(i);
  std::vector<int> order = cached;
  order.insert(order.end(), missing.begin(), missing.end());
  const int workers =
      std::max(1, std::min(static_cast<int>(missing.size()), threads > 0 ? threads : compileThreads()));
  std::atomic<int> next{static_cast<int>(cached.size())}; // the pool takes the missing ones
  std::mutex mutex; // guards done, firstError and the progress callback
  int done = 0;
  std::exception_ptr firstError;
  auto loadOne = [&](int i) {
    auto t0 = std::chrono::steady_clock::now();
    double seconds = 0;
    try {
      ctx.kernels->get(specs[static_cast<std::size_t>(i)]);
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } catch (...) {
      seconds = -1;
      std::lock_guard<std::mutex> lock(mutex);
      if (!firstError)
        firstError = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex);
    ++done;
    if (progress)
      progress(done, total, specs[static_cast<std::size_t>(i)], seconds);
  };
  auto work = [&] {
    for (int k; (k = next.fetch_add(1)) < total;)
      loadOne(order[static_cast<std::size_t>(k)]);
  };
  for (int i : cached) // one after the other
    loadOne(i);
  std::vector<std::thread> pool;
  for (int t = 1; t < workers; ++t)
    pool.emplace_back(work);
  work(); // this thread works too
  for (std::thread &t : pool)
    t.join();
  if (firstError)
    std::rethrow_exception(firstError);
  return total;
}

} // namespace nsajit::rt
