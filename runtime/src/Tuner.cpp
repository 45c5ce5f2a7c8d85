#include "Tuner.h"

#include "Backward.h"
#include "Log.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>

namespace nsajit::rt {

std::vector<TileConfig> tileCandidates(const KernelSpec &spec, int sharedLimitBytes) {
  KernelSpec base = spec;
  base.tile = TileConfig{};
  std::vector<TileConfig> out{defaultTileConfig(base)};
  const bool selected = base.branch == Branch::Selected;
  for (int warps : {1, 2, 4, 8}) {
    const int rows = warps * 16;
    if (rows < base.group)
      continue; // a CTA holds every query head of its group
    // Selected forward: one token per CTA (where its rows fill the warps) and the union
    // schedule over as many tokens as the rows hold.
    std::vector<int> tokenCounts{rows / base.group};
    if (selected && warps == std::max(1, base.group / 16) && rows / base.group > 1)
      tokenCounts.push_back(1); // per-token with no idle warp (G < 16: part of a warp idles)
    for (int tokens : tokenCounts)
      for (int chunk : {16, 32, 64, 128}) {
        KernelSpec s = base;
        s.tile = {warps, tokens, chunk};
        if (!validate(s).empty() || sharedMemoryBytes(s) > sharedLimitBytes || threadsPerCta(s) > 1024)
          continue;
        if (std::find(out.begin(), out.end(), s.tile) == out.end())
          out.push_back(s.tile);
      }
  }
  return out;
}

PickedIndex pickFastest(int candidates, const std::function<double(int)> &measure,
                        const std::function<void(int done, int i, double ms)> &progress,
                        const std::function<std::string(int)> &describe, double minGain) {
  PickedIndex r;
  r.candidates = candidates;
  bool have = false;
  for (int i = 0; i < candidates; ++i) {
    double ms = -1;
    try {
      ms = measure(i);
    } catch (const Error &e) {
      ++r.failed;
      logMessage(NSAJIT_LOG_INFO, fmt::format("tuning: {} failed: {}", describe(i), e.what()));
    }
    if (i == 0)
      r.defaultMs = ms;
    if (ms >= 0 && (!have || ms < r.bestMs * (1.0 - (r.best == 0 ? minGain : 0.0)))) {
      r.best = i;
      r.bestMs = ms;
      have = true;
    }
    if (progress)
      progress(i + 1, i, ms);
  }
  if (!have)
    fail(NSAJIT_ERROR_DRIVER_ERROR, "tuning: all {} candidates failed (see the log)", candidates);
  return r;
}

TuneResult pickBest(const std::vector<TileConfig> &candidates, const std::function<double(const TileConfig &)> &measure,
                    const TuneProgress &progress, double minGain) {
  const int n = static_cast<int>(candidates.size());
  auto tileName = [&](int i) {
    const TileConfig &t = candidates[static_cast<std::size_t>(i)];
    return fmt::format("tile w{} t{} c{}", t.warps, t.tokensPerCta, t.kvChunk);
  };
  std::function<void(int, int, double)> report;
  if (progress)
    report = [&](int done, int i, double ms) { progress(done, n, candidates[static_cast<std::size_t>(i)], ms); };
  PickedIndex p = pickFastest(
      n, [&](int i) { return measure(candidates[static_cast<std::size_t>(i)]); }, report, tileName, minGain);
  TuneResult r;
  r.candidates = p.candidates;
  r.failed = p.failed;
  r.defaults = candidates.front();
  r.defaultMs = p.defaultMs;
  r.best = candidates[static_cast<std::size_t>(p.best)];
  r.bestMs = p.bestMs;
  return r;
}

std::vector<int> backwardSplitCandidates(const std::function<int(int splitTokens)> &splitsOf, int seqLen) {
  std::vector<int> out{0}, seen{splitsOf(0)};
  std::vector<int> lengths;
  for (int t = 256; t <= 32768 && t < seqLen; t *= 2)
    lengths.push_back(t);
  lengths.push_back(std::max(1, seqLen)); // no split
  for (int t : lengths) {
    const int splits = splitsOf(t);
    if (std::find(seen.begin(), seen.end(), splits) == seen.end()) {
      out.push_back(t);
      seen.push_back(splits);
    }
  }
  return out;
}

std::vector<std::int32_t> localIndices(int batch, int seqLen, int heads, int n, int block, std::mt19937 &rng) {
  constexpr int kLocalNear = 16, kLocalFar = 2;
  std::vector<std::int32_t> idx(static_cast<std::size_t>(batch) * seqLen * heads * n, -1);
  std::vector<std::int32_t> picks, pool;
  // Up to `want` more distinct blocks of [lo, hi), in random order.
  auto draw = [&](int lo, int hi, int want) {
    pool.clear();
    for (int j = lo; j < hi; ++j)
      if (std::find(picks.begin(), picks.end(), j) == picks.end())
        pool.push_back(j);
    for (int i = 0; i < static_cast<int>(pool.size()) && want > 0 && static_cast<int>(picks.size()) < n; ++i, --want) {
      std::swap(pool[static_cast<std::size_t>(i)], pool[i + rng() % (pool.size() - i)]);
      picks.push_back(pool[static_cast<std::size_t>(i)]);
    }
  };
  std::size_t at = 0;
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < seqLen; ++t)
      for (int h = 0; h < heads; ++h, at += n) {
        const int c = t / block, nearStart = std::max(1, c - kLocalNear);
        picks.clear();
        for (int j : {0, c, c - 1})
          if (j >= 0 && static_cast<int>(picks.size()) < n &&
              std::find(picks.begin(), picks.end(), j) == picks.end())
            picks.push_back(j);
        // Far draws by rejection (their range can be the whole sequence), near ones from a pool.
        const int farBlocks = nearStart - 1; // blocks 1 .. nearStart - 1
        for (int k = 0; k < std::min(kLocalFar, farBlocks) && static_cast<int>(picks.size()) < n;) {
          const int j = 1 + static_cast<int>(rng() % farBlocks);
          if (std::find(picks.begin(), picks.end(), j) == picks.end()) {
            picks.push_back(j);
            ++k;
          }
        }
        draw(nearStart, c - 1, n);
        if (static_cast<int>(picks.size()) < n)
          draw(1, nearStart, n);
        std::sort(picks.begin(), picks.end());
        std::copy(picks.begin(), picks.end(), idx.begin() + static_cast<std::ptrdiff_t>(at));
      }
  return idx;
}

namespace {

// A device allocation freed on scope exit.
struct DeviceAllocation {
  const CudaDriver &drv;
  CUdeviceptr ptr = 0;
  DeviceAllocation(const CudaDriver &d, std::size_t bytes) : drv(d) {
    CUresult r = drv.cuMemAlloc(&ptr, std::max<std::size_t>(bytes, 256));
    if (r != CUDA_SUCCESS)
      fail(CudaDriver::statusFor(r), "tuning: cuMemAlloc of {} bytes failed: {}", bytes, drv.errorText(r));
  }
  ~DeviceAllocation() { drv.cuMemFree(ptr); }
  DeviceAllocation(const DeviceAllocation &) = delete;
  DeviceAllocation &operator=(const DeviceAllocation &) = delete;
};

// Random bf16/fp16 values of magnitude in [1/32, 1) (built from their bits: no
// conversion needed), uploaded in pieces of one random megabyte.
void fillRandomHalf(const CudaDriver &drv, CUdeviceptr dst, std::size_t elements, DType dtype, std::mt19937 &rng) {
  std::vector<std::uint16_t> piece(std::min<std::size_t>(elements, 1 << 19));
  for (std::uint16_t &x : piece) {
    std::uint32_t r = rng();
    if (dtype == DType::BF16) // exponent 122..126 (2^-5 .. 2^-1), 7 mantissa bits
      x = static_cast<std::uint16_t>(((r & 1) << 15) | ((122 + (r >> 1) % 5) << 7) | ((r >> 8) & 0x7f));
    else // fp16: exponent 10..14, 10 mantissa bits
      x = static_cast<std::uint16_t>(((r & 1) << 15) | ((10 + (r >> 1) % 5) << 10) | ((r >> 8) & 0x3ff));
  }
  for (std::size_t done = 0; done < elements; done += piece.size()) {
    std::size_t n = std::min(piece.size(), elements - done);
    drv.check(drv.cuMemcpyHtoD(dst + done * 2, piece.data(), n * 2), "cuMemcpyHtoD");
  }
}

// Selected-branch indices [B, T, H, n]: distinct random visible blocks, -1 padded.
std::vector<std::int32_t> randomIndices(int batch, int seqLen, int heads, int n, int block, std::mt19937 &rng) {
  std::vector<std::int32_t> idx(static_cast<std::size_t>(batch) * seqLen * heads * n, -1);
  std::vector<std::int32_t> pool;
  std::size_t at = 0;
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < seqLen; ++t)
      for (int h = 0; h < heads; ++h, at += n) {
        const int visible = t / block + 1;
        const int take = std::min(n, visible);
        if (visible <= 4 * n) { // a partial shuffle of all visible blocks
          pool.resize(visible);
          for (int i = 0; i < visible; ++i)
            pool[i] = i;
          for (int i = 0; i < take; ++i)
            std::swap(pool[i], pool[i + rng() % (visible - i)]);
          std::copy(pool.begin(), pool.begin() + take, idx.begin() + at);
        } else { // rejection sampling of distinct blocks
          for (int i = 0; i < take;) {
            std::int32_t c = static_cast<std::int32_t>(rng() % visible);
            if (std::find(idx.begin() + at, idx.begin() + at + i, c) == idx.begin() + at + i)
              idx[at + i++] = c;
          }
        }
      }
  return idx;
}

nsajit_tensor contiguous(CUdeviceptr data, std::int64_t tokens, std::int64_t heads, std::int64_t dim) {
  return nsajit_tensor{data, tokens * heads * dim, heads * dim, dim};
}

// The random problem a tuning run times: q, k, v, the selected branch's
// indices and the forward outputs, plus (backward) dout and the gradients.
// The selected branch has a second problem on local indices (localIndices, with
// its own o and lse): the tuners rank its candidates by the sum of both times,
// since a schedule that wins on random indices can lose on the local ones
// trained models select (H100, T = 64k: one token a CTA, picked on random
// indices, is the benchmark's slowest selected schedule on local ones; a dK/dV
// split of 16384 tokens: 17.7 against 19.3 ms on random, 27.6 against 21.7 on
// local; s15run2, s15run3, s15run5).
struct RandomProblem {
  std::vector<std::unique_ptr<DeviceAllocation>> memory;
  nsajit_tensor q{}, k{}, v{}, indices{}, o{}, lse{}, dout{}, delta{}, dq{}, dk{}, dv{};
  nsajit_tensor localIdx{}, oLocal{}, lseLocal{};
  ForwardRequest forward, forwardLocal;
  BackwardRequest backward, backwardLocal;
  bool hasLocal = false; // the selected branch

  // The requests a candidate is timed on: random indices, then (selected) local ones.
  std::vector<const ForwardRequest *> forwards() const {
    return hasLocal ? std::vector<const ForwardRequest *>{&forward, &forwardLocal}
                    : std::vector<const ForwardRequest *>{&forward};
  }
  std::vector<const BackwardRequest *> backwards() const {
    return hasLocal ? std::vector<const BackwardRequest *>{&backward, &backwardLocal}
                    : std::vector<const BackwardRequest *>{&backward};
  }

  RandomProblem(const CudaDriver &drv, const KernelSpec &spec, const nsajit_config *config, Branch branch, int batch,
                int seqLen, int H, bool withBackward) {
    std::mt19937 rng(12345);
    const std::int64_t B = batch, T = seqLen, HQ = std::int64_t{H} * spec.group, Dk = spec.headDimQK,
                       Dv = spec.headDimV;
    const std::int64_t Tkv =
        branch == Branch::Compressed ? compressedLength(seqLen, spec.cmpBlock, spec.cmpStride) : seqLen;
    auto alloc = [&](std::int64_t tokens, std::int64_t heads, std::int64_t dim, std::size_t bytesPer, bool random) {
      memory.push_back(std::make_unique<DeviceAllocation>(drv, std::size_t(B * tokens * heads * dim) * bytesPer));
      if (random)
        fillRandomHalf(drv, memory.back()->ptr, std::size_t(B * tokens * heads * dim), spec.dtype, rng);
      return contiguous(memory.back()->ptr, tokens, heads, dim);
    };
    q = alloc(T, HQ, Dk, 2, true);
    k = alloc(Tkv, H, Dk, 2, true);
    v = alloc(Tkv, H, Dv, 2, true);
    o = alloc(T, HQ, Dv, 2, false);
    lse = alloc(T, HQ, 1, 4, false);
    hasLocal = branch == Branch::Selected;
    if (hasLocal) {
      indices = alloc(T, H, spec.slcCount, 4, false);
      std::vector<std::int32_t> host = randomIndices(batch, seqLen, H, spec.slcCount, spec.slcBlock, rng);
      drv.check(drv.cuMemcpyHtoD(indices.data, host.data(), host.size() * 4), "cuMemcpyHtoD");
      localIdx = alloc(T, H, spec.slcCount, 4, false);
      host = localIndices(batch, seqLen, H, spec.slcCount, spec.slcBlock, rng);
      drv.check(drv.cuMemcpyHtoD(localIdx.data, host.data(), host.size() * 4), "cuMemcpyHtoD");
      oLocal = alloc(T, HQ, Dv, 2, false);
      lseLocal = alloc(T, HQ, 1, 4, false);
    }
    forward.branch = branch;
    forward.config = config;
    forward.batch = batch;
    forward.seqLen = seqLen;
    forward.q = &q;
    forward.k = &k;
    forward.v = &v;
    forward.indices = branch == Branch::Selected ? &indices : nullptr;
    forward.out = &o;
    forward.lse = &lse;
    forwardLocal = forward;
    forwardLocal.indices = &localIdx;
    forwardLocal.out = &oLocal;
    forwardLocal.lse = &lseLocal;
    if (!withBackward)
      return;
    dout = alloc(T, HQ, Dv, 2, true);
    delta = alloc(T, HQ, 1, 4, false);
    dq = alloc(T, HQ, Dk, 2, false);
    dk = alloc(Tkv, H, Dk, 2, false);
    dv = alloc(Tkv, H, Dv, 2, false);
    backward.branch = branch;
    backward.config = config;
    backward.batch = batch;
    backward.seqLen = seqLen;
    backward.q = &q;
    backward.k = &k;
    backward.v = &v;
    backward.indices = forward.indices;
    backward.o = &o;
    backward.lse = &lse;
    backward.dout = &dout;
    backward.delta = &delta;
    backward.dq = &dq;
    backward.dk = &dk;
    backward.dv = &dv;
    backwardLocal = backward;
    backwardLocal.indices = &localIdx;
    backwardLocal.o = &oLocal;
    backwardLocal.lse = &lseLocal;
  }
};

// Times launches on the default stream with CUDA events.
class EventTimer {
public:
  explicit EventTimer(const CudaDriver &drv) : drv_(drv) {
    drv.check(drv.cuEventCreate(&start_, CU_EVENT_DEFAULT), "cuEventCreate");
    drv.check(drv.cuEventCreate(&stop_, CU_EVENT_DEFAULT), "cuEventCreate");
  }
  ~EventTimer() {
    drv_.cuEventDestroy(start_);
    drv_.cuEventDestroy(stop_);
  }
  EventTimer(const EventTimer &) = delete;
  EventTimer &operator=(const EventTimer &) = delete;

  // One untimed launch (compiles and loads; warms the caches), then the median
  // of `repeats` single-launch timings.
  double medianMs(int repeats, const std::function<void()> &launch) {
    launch();
    drv_.check(drv_.cuCtxSynchronize(), "cuCtxSynchronize (a tuning launch failed)");
    std::vector<float> times;
    for (int r = 0; r < repeats; ++r) {
      drv_.check(drv_.cuEventRecord(start_, nullptr), "cuEventRecord");
      launch();
      drv_.check(drv_.cuEventRecord(stop_, nullptr), "cuEventRecord");
      drv_.check(drv_.cuEventSynchronize(stop_), "cuEventSynchronize");
      float ms = 0;
      drv_.check(drv_.cuEventElapsedTime(&ms, start_, stop_), "cuEventElapsedTime");
      times.push_back(ms);
    }
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    return static_cast<double>(times[times.size() / 2]);
  }

private:
  const CudaDriver &drv_;
  CUevent start_ = nullptr, stop_ = nullptr;
};

// The checks both tuners share; returns the config with its tile fields 0.
nsajit_config checkedTuningConfig(const nsajit_config *config, int batch, int seqLen, int repeats) {
  if (!config)
    invalidArgument("config is NULL: pass an nsajit_config (nsajit_config_init)");
  if (batch < 1 || seqLen < 1)
    invalidArgument("tuning size batch = {}, seq_len = {}: both must be >= 1", batch, seqLen);
  if (repeats < 1 || repeats > 10000)
    invalidArgument("repeats = {} is out of range; allowed: 1..10000", repeats);
  nsajit_config c = readConfig(config);
  c.tile_warps = c.tile_tokens = c.tile_kv_chunk = 0;
  return c;
}

// The spec of `pass` for the tuning config; the compressed branch needs a key.
KernelSpec tuningSpec(const nsajit_config &c, Branch branch, Arch arch, KernelPass pass, int seqLen) {
  KernelSpec spec = specFromConfig(&c, branch, arch, pass);
  if (branch == Branch::Compressed && compressedLength(seqLen, spec.cmpBlock, spec.cmpStride) == 0)
    invalidArgument("tuning: seq_len = {} is shorter than the compressed block l = {}: nothing to time", seqLen,
                    spec.cmpBlock);
  return spec;
}

void recordTuning(nsajit_context &ctx, const TuningEntry &e) {
  if (!ctx.tuning->record(e))
    logMessage(NSAJIT_LOG_WARNING, fmt::format("tuning: result kept in memory only: {}", ctx.tuning->warning()));
}

} // namespace

TuneResult tuneForward(nsajit_context &ctx, const nsajit_config *config, Branch branch, int batch, int seqLen,
                       int repeats, const TuneProgress &progress) {
  const nsajit_config c = checkedTuningConfig(config, batch, seqLen, repeats);
  const KernelSpec spec = tuningSpec(c, branch, contextArch(ctx), KernelPass::Forward, seqLen);
  const CudaDriver &drv = *ctx.drv;
  ScopedContext scope(drv, ctx.cuContext);
  RandomProblem problem(drv, spec, &c, branch, batch, seqLen, c.num_kv_heads, false);
  EventTimer timer(drv);

  auto measure = [&](const TileConfig &tile) {
    nsajit_config tc = c;
    tc.tile_warps = tile.warps;
    tc.tile_tokens = tile.tokensPerCta;
    tc.tile_kv_chunk = tile.kvChunk;
    double ms = 0;
    for (const ForwardRequest *base : problem.forwards()) {
      ForwardRequest req = *base;
      req.config = &tc;
      ms += timer.medianMs(repeats, [&] { launchForward(ctx, req, nullptr); });
    }
    return ms;
  };

  TuneResult r = pickBest(tileCandidates(spec, ctx.info.sharedPerBlockOptin), measure, progress);
  TuningEntry e;
  e.key = tuningKey(spec);
  e.tokens = std::int64_t{batch} * seqLen;
  e.tile = r.best;
  e.bestMs = r.bestMs;
  e.defaultMs = r.defaultMs;
  recordTuning(ctx, e);
  r.database = ctx.tuning->path();
  return r;
}

BackwardTuneResult tuneBackward(nsajit_context &ctx, const nsajit_config *config, Branch branch, int batch,
                                int seqLen, int repeats, const BackwardTuneProgress &progress) {
  const nsajit_config c = checkedTuningConfig(config, batch, seqLen, repeats);
  const Arch arch = contextArch(ctx);
  const KernelSpec dkdv = tuningSpec(c, branch, arch, KernelPass::BackwardDKDV, seqLen);
  const CudaDriver &drv = *ctx.drv;
  ScopedContext scope(drv, ctx.cuContext);
  RandomProblem problem(drv, dkdv, &c, branch, batch, seqLen, c.num_kv_heads, true);
  EventTimer timer(drv);
  for (const ForwardRequest *req : problem.forwards()) // o and lse (the forward's tuned tile, if any)
    launchForward(ctx, *req, nullptr);
  drv.check(drv.cuCtxSynchronize(), "cuCtxSynchronize (the tuning forward failed)");

  auto splitsOf = [&](int splitTokens) {
    BackwardOptions options;
    options.splitTokens = splitTokens;
    options.smCount = ctx.info.smCount;
    return prepareBackward(problem.backward, arch, options).dkdvSplits;
  };
  const std::vector<int> candidates = backwardSplitCandidates(splitsOf, seqLen);
  const int n = static_cast<int>(candidates.size());
  auto length = [&](int i) { return candidates[static_cast<std::size_t>(i)]; };
  std::function<void(int, int, double)> report;
  if (progress)
    report = [&](int done, int i, double ms) { progress(done, n, length(i), splitsOf(length(i)), ms); };
  PickedIndex p = pickFastest(
      n,
      [&](int i) {
        double ms = 0;
        for (const BackwardRequest *req : problem.backwards())
          ms += timer.medianMs(repeats, [&] { launchBackward(ctx, *req, nullptr, length(i)); });
        return ms;
      },
      report, [&](int i) { return fmt::format("backward split {} tokens", length(i)); });

  BackwardTuneResult r;
  r.bestSplitTokens = length(p.best);
  r.bestSplits = splitsOf(r.bestSplitTokens);
  r.defaultSplits = splitsOf(0);
  r.bestMs = p.bestMs;
  r.defaultMs = p.defaultMs;
  r.candidates = p.candidates;
  r.failed = p.failed;
  TuningEntry e;
  e.key = tuningKey(dkdv);
  e.tokens = std::int64_t{batch} * seqLen;
  e.tile = withDefaultTiles(dkdv).tile;
  e.splitTokens = r.bestSplitTokens;
  e.bestMs = r.bestMs;
  e.defaultMs = r.defaultMs;
  recordTuning(ctx, e);
  r.database = ctx.tuning->path();
  return r;
}

} // namespace nsajit::rt
