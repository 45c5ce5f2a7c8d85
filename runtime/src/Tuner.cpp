#include "Tuner.h"

#include "Log.h"

#include <algorithm>
#include <cstring>
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

TuneResult pickBest(const std::vector<TileConfig> &candidates, const std::function<double(const TileConfig &)> &measure,
                    const TuneProgress &progress, double minGain) {
  TuneResult r;
  r.candidates = static_cast<int>(candidates.size());
  bool have = false;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const TileConfig &t = candidates[i];
    double ms = -1;
    try {
      ms = measure(t);
    } catch (const Error &e) {
      ++r.failed;
      logMessage(NSAJIT_LOG_INFO, fmt::format("tuning: tile w{} t{} c{} failed: {}", t.warps, t.tokensPerCta,
                                              t.kvChunk, e.what()));
    }
    if (i == 0) {
      r.defaults = t;
      r.defaultMs = ms;
    }
    if (ms >= 0 && (!have || ms < r.bestMs * (1.0 - (r.best == r.defaults ? minGain : 0.0)))) {
      r.best = t;
      r.bestMs = ms;
      have = true;
    }
    if (progress)
      progress(static_cast<int>(i) + 1, r.candidates, t, ms);
  }
  if (!have)
    fail(NSAJIT_ERROR_DRIVER_ERROR, "tuning: all {} candidate tiles failed (see the log)", r.candidates);
  return r;
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

} // namespace

TuneResult tuneForward(nsajit_context &ctx, const nsajit_config *config, Branch branch, int batch, int seqLen,
                       int repeats, const TuneProgress &progress) {
  if (!config)
    invalidArgument("config is NULL: pass an nsajit_config (nsajit_config_init)");
  if (batch < 1 || seqLen < 1)
    invalidArgument("tuning size batch = {}, seq_len = {}: both must be >= 1", batch, seqLen);
  if (repeats < 1 || repeats > 10000)
    invalidArgument("repeats = {} is out of range; allowed: 1..10000", repeats);
  nsajit_config c = readConfig(config);
  c.tile_warps = c.tile_tokens = c.tile_kv_chunk = 0;
  const Arch arch = contextArch(ctx);
  const KernelSpec spec = specFromConfig(&c, branch, arch);
  const int H = c.num_kv_heads, HQ = H * spec.group;
  const int Tkv = branch == Branch::Compressed ? compressedLength(seqLen, spec.cmpBlock, spec.cmpStride) : seqLen;
  if (Tkv == 0)
    invalidArgument("tuning: seq_len = {} is shorter than the compressed block l = {}: nothing to time", seqLen,
                    spec.cmpBlock);

  const CudaDriver &drv = *ctx.drv;
  ScopedContext scope(drv, ctx.cuContext);
  std::mt19937 rng(12345);
  const std::size_t B = batch, T = seqLen;
  DeviceAllocation q(drv, B * T * HQ * spec.headDimQK * 2), k(drv, B * Tkv * H * spec.headDimQK * 2),
      v(drv, B * Tkv * H * spec.headDimV * 2), o(drv, B * T * HQ * spec.headDimV * 2), lse(drv, B * T * HQ * 4),
      idx(drv, branch == Branch::Selected ? B * T * H * spec.slcCount * 4 : 0);
  fillRandomHalf(drv, q.ptr, B * T * HQ * spec.headDimQK, spec.dtype, rng);
  fillRandomHalf(drv, k.ptr, B * Tkv * H * spec.headDimQK, spec.dtype, rng);
  fillRandomHalf(drv, v.ptr, B * Tkv * H * spec.headDimV, spec.dtype, rng);
  if (branch == Branch::Selected) {
    std::vector<std::int32_t> host = randomIndices(batch, seqLen, H, spec.slcCount, spec.slcBlock, rng);
    drv.check(drv.cuMemcpyHtoD(idx.ptr, host.data(), host.size() * 4), "cuMemcpyHtoD");
  }
  const nsajit_tensor tq = contiguous(q.ptr, T, HQ, spec.headDimQK), tk = contiguous(k.ptr, Tkv, H, spec.headDimQK),
                      tv = contiguous(v.ptr, Tkv, H, spec.headDimV), to = contiguous(o.ptr, T, HQ, spec.headDimV),
                      tl = contiguous(lse.ptr, T, HQ, 1), ti = contiguous(idx.ptr, T, H, spec.slcCount);

  CUevent start = nullptr, stop = nullptr;
  drv.check(drv.cuEventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate");
  drv.check(drv.cuEventCreate(&stop, CU_EVENT_DEFAULT), "cuEventCreate");
  struct Events {
    const CudaDriver &drv;
    CUevent a, b;
    ~Events() {
      drv.cuEventDestroy(a);
      drv.cuEventDestroy(b);
    }
  } events{drv, start, stop};

  auto measure = [&](const TileConfig &tile) {
    nsajit_config tc = c;
    tc.tile_warps = tile.warps;
    tc.tile_tokens = tile.tokensPerCta;
    tc.tile_kv_chunk = tile.kvChunk;
    ForwardRequest req;
    req.branch = branch;
    req.config = &tc;
    req.batch = batch;
    req.seqLen = seqLen;
    req.q = &tq;
    req.k = &tk;
    req.v = &tv;
    req.indices = branch == Branch::Selected ? &ti : nullptr;
    req.out = &to;
    req.lse = &tl;
    launchForward(ctx, req, nullptr); // compiles and loads; warms the caches
    drv.check(drv.cuCtxSynchronize(), "cuCtxSynchronize (a tuning launch failed)");
    // Median of `repeats` single-launch timings.
    std::vector<float> times;
    for (int r = 0; r < repeats; ++r) {
      drv.check(drv.cuEventRecord(start, nullptr), "cuEventRecord");
      launchForward(ctx, req, nullptr);
      drv.check(drv.cuEventRecord(stop, nullptr), "cuEventRecord");
      drv.check(drv.cuEventSynchronize(stop), "cuEventSynchronize");
      float ms = 0;
      drv.check(drv.cuEventElapsedTime(&ms, start, stop), "cuEventElapsedTime");
      times.push_back(ms);
    }
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    return static_cast<double>(times[times.size() / 2]);
  };

  TuneResult r = pickBest(tileCandidates(spec, ctx.info.sharedPerBlockOptin), measure, progress);
  TuningEntry e;
  e.key = tuningKey(spec);
  e.tokens = static_cast<std::int64_t>(B * T);
  e.tile = r.best;
  e.bestMs = r.bestMs;
  e.defaultMs = r.defaultMs;
  if (!ctx.tuning->record(e))
    logMessage(NSAJIT_LOG_WARNING, fmt::format("tuning: result kept in memory only: {}", ctx.tuning->warning()));
  r.database = ctx.tuning->path();
  return r;
}

} // namespace nsajit::rt
