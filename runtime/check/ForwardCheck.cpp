#include "ForwardCheck.h"

#include "runtime/reference/Reference.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

namespace nsajit::check {

int Case::kvLen() const { return branch == Br::Cmp ? ref::numCompressed(t, l, d) : t; }

std::string Case::label() const {
  char buf[256];
  const char *names[] = {"compressed", "selected", "window"};
  int n0 = std::snprintf(buf, sizeof buf, "%-10s %s dk=%d dv=%d G=%d H=%d B=%d T=%d", names[int(branch)],
                         fp16 ? "fp16" : "bf16", dk, dv, g, h, b, t);
  if (branch == Br::Cmp) std::snprintf(buf + n0, sizeof buf - n0, " l=%d d=%d", l, d);
  if (branch == Br::Slc)
    std::snprintf(buf + n0, sizeof buf - n0, " l'=%d n=%d%s", lsel, n,
                  indices == IndexMode::Hostile ? " hostile-indices"
                  : indices == IndexMode::Local ? " local-indices"
                                                : "");
  if (branch == Br::Swa) std::snprintf(buf + n0, sizeof buf - n0, " w=%d", w);
  std::string s = buf;
  if (padded) s += " strided";
  if (tileTokens) s += " tile-tokens=" + std::to_string(tileTokens);
  if (tileWarps) s += " tile-warps=" + std::to_string(tileWarps);
  if (tileKvChunk) s += " tile-kv-chunk=" + std::to_string(tileKvChunk);
  if (arch) s += " sm_" + std::to_string(arch);
  return s;
}

void HostTensor::shape(int b, int n, int hh, int d, bool padded) {
  B = b, N = n, Hh = hh, D = d;
  sh = padded ? D + 8 : D;
  st = Hh * sh + (padded ? 16 : 0);
  sb = std::int64_t(N) * st + (padded ? 8 : 0);
  values.assign(std::size_t(B) * N * Hh * D, 0.0f);
}

std::size_t HostTensor::storageElems() const { return std::max<std::size_t>(std::size_t(B) * sb, 8); }

std::vector<std::uint16_t> HostTensor::pack(bool fp16) const {
  std::vector<std::uint16_t> out(storageElems(), fp16 ? 0x7E00 : 0x7FC0); // NaN in the gaps
  for (int b = 0; b < B; ++b)
    for (int n = 0; n < N; ++n)
      for (int h = 0; h < Hh; ++h)
        for (int d = 0; d < D; ++d) {
          float v = values[((std::size_t(b) * N + n) * Hh + h) * D + d];
          out[b * sb + n * st + h * sh + d] = fp16 ? ref::floatToFp16Bits(v) : ref::floatToBf16Bits(v);
        }
  return out;
}

std::vector<float> HostTensor::unpack(const std::vector<std::uint16_t> &raw, bool fp16) const {
  std::vector<float> out(std::size_t(B) * N * Hh * D);
  for (int b = 0; b < B; ++b)
    for (int n = 0; n < N; ++n)
      for (int h = 0; h < Hh; ++h)
        for (int d = 0; d < D; ++d) {
          std::uint16_t bits = raw[b * sb + n * st + h * sh + d];
          out[((std::size_t(b) * N + n) * Hh + h) * D + d] =
              fp16 ? ref::fp16BitsToFloat(bits) : ref::bf16BitsToFloat(bits);
        }
  return out;
}

namespace {
void randomFill(HostTensor &t, std::mt19937 &rng, bool fp16) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float &x : t.values) x = fp16 ? ref::roundToFp16(dist(rng)) : ref::roundToBf16(dist(rng));
}

// Selection indices: the local block and block 0 first, then random visible
// blocks, -1 padding; hostile mode adds negative, future and huge indices.
std::vector<std::int32_t> makeIndices(const Case &c, std::mt19937 &rng) {
  std::vector<std::int32_t> idx(std::size_t(c.b) * c.t * c.h * c.n, -1);
  for (int b = 0; b < c.b; ++b)
    for (int t = 0; t < c.t; ++t)
      for (int h = 0; h < c.h; ++h) {
        std::int32_t *row = &idx[((std::size_t(b) * c.t + t) * c.h + h) * c.n];
        int visible = t / c.lsel + 1;
        if (c.indices == IndexMode::Local) {
          // Block 0, the query's block and the one before, then blocks drawn from
          // the 16 before it (repeats allowed: a repeated block counts twice).
          int own = t / c.lsel;
          row[0] = 0, row[1] = own;
          if (c.n > 2) row[2] = std::max(0, own - 1);
          for (int i = 3; i < c.n; ++i) row[i] = std::max(0, own - 1 - int(rng() % 16));
          if (rng() % 5 == 0) row[c.n - 1] = -1;
          std::shuffle(row, row + c.n, rng);
          continue;
        }
        std::vector<int> blocks(visible);
        for (int j = 0; j < visible; ++j) blocks[j] = j;
        std::shuffle(blocks.begin(), blocks.end(), rng);
        auto local = std::find(blocks.begin(), blocks.end(), t / c.lsel);
        std::iter_swap(blocks.begin(), local);
        int take = std::min<int>(visible, c.n - (rng() % 2)); // sometimes leave a -1
        for (int i = 0; i < take; ++i) row[i] = blocks[i];
        if (c.indices == IndexMode::Hostile) {
          const std::int32_t bad[] = {-7, t / c.lsel + 1, 1 << 30, -(1 << 30), 2147483647};
          row[c.n - 1] = bad[rng() % 5];
        }
        std::shuffle(row, row + c.n, rng);
      }
  return idx;
}

} // namespace

Prepared prepare(const Case &c) {
  Prepared p;
  p.c = c;
  std::mt19937 rng(c.seed);
  p.q.shape(c.b, c.t, c.hq(), c.dk, c.padded);
  p.k.shape(c.b, c.kvLen(), c.h, c.dk, c.padded);
  p.v.shape(c.b, c.kvLen(), c.h, c.dv, c.padded);
  p.o.shape(c.b, c.t, c.hq(), c.dv, c.padded);
  randomFill(p.q, rng, c.fp16);
  randomFill(p.k, rng, c.fp16);
  randomFill(p.v, rng, c.fp16);
  p.scale = 1.0f / std::sqrt(float(c.dk));
  ref::Dims dims{c.b, c.t, c.h, c.g, c.dk, c.dv};
  switch (c.branch) {
  case Br::Cmp:
    ref::compressedAttention(dims, c.l, c.d, p.scale, p.q.values, p.k.values, p.v.values, p.refO, p.refLse);
    break;
  case Br::Slc:
    p.idx = makeIndices(c, rng);
    ref::selectedAttention(dims, c.lsel, c.n, p.scale, p.q.values, p.k.values, p.v.values, p.idx, p.refO,
                           p.refLse);
    break;
  case Br::Swa:
    ref::windowAttention(dims, c.w, p.scale, p.q.values, p.k.values, p.v.values, p.refO, p.refLse);
    break;
  }
  return p;
}


nsajit_config configFor(const Case &c) {
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  cfg.dtype = c.fp16 ? NSAJIT_DTYPE_FP16 : NSAJIT_DTYPE_BF16;
  cfg.head_dim_qk = c.dk, cfg.head_dim_v = c.dv, cfg.num_kv_heads = c.h, cfg.group = c.g;
  cfg.cmp_block = c.l, cfg.cmp_stride = c.d, cfg.slc_block = c.lsel, cfg.slc_count = c.n, cfg.window = c.w;
  cfg.tile_tokens = c.tileTokens;
  cfg.tile_warps = c.tileWarps;
  cfg.tile_kv_chunk = c.tileKvChunk;
  return cfg;
}

DeviceCase::DeviceCase(Device &dev, const Prepared &p)
    : p(p), cfg(configFor(p.c)), q(dev, p.q.storageElems() * 2), k(dev, p.k.storageElems() * 2),
      v(dev, p.v.storageElems() * 2), o(dev, p.o.storageElems() * 2),
      lse(dev, std::size_t(p.c.b) * p.c.t * p.c.hq() * 4), idx(dev, std::max<std::size_t>(p.idx.size(), 1) * 4) {
  const Case &c = p.c;
  q.upload(p.q.pack(c.fp16)), k.upload(p.k.pack(c.fp16)), v.upload(p.v.pack(c.fp16));
  if (!p.idx.empty()) idx.upload(p.idx);
  dev.fill(o.ptr, 0xFF, o.bytes); // NaN everywhere: every element must be written
  dev.fill(lse.ptr, 0xFF, lse.bytes);
  tq = p.q.view(q.ptr), tk = p.k.view(k.ptr), tv = p.v.view(v.ptr), to = p.o.view(o.ptr);
  tl = rowTensor(lse.ptr);
  ti = {idx.ptr, std::int64_t(c.t) * c.h * c.n, std::int64_t(c.h) * c.n, c.n};
}

nsajit_tensor DeviceCase::rowTensor(CUdeviceptr ptr) const {
  return {ptr, std::int64_t(p.c.t) * p.c.hq(), p.c.hq(), 1};
}

std::string DeviceCase::forward(nsajit_context *ctx) {
  const Case &c = p.c;
  nsajit_status st = nsajit_context_set_arch(ctx, c.arch);
  if (st != NSAJIT_OK)
    return nsajit_last_error();
  switch (c.branch) {
  case Br::Cmp: st = nsajit_compressed_forward(ctx, &cfg, c.b, c.t, &tq, &tk, &tv, &to, &tl, nullptr); break;
  case Br::Slc: st = nsajit_selected_forward(ctx, &cfg, c.b, c.t, &tq, &tk, &tv, &ti, &to, &tl, nullptr); break;
  case Br::Swa: st = nsajit_window_forward(ctx, &cfg, c.b, c.t, &tq, &tk, &tv, &to, &tl, nullptr); break;
  }
  if (st != NSAJIT_OK)
    return std::string(nsajit_status_string(st)) + ": " + nsajit_last_error();
  return {};
}

Outcome runOnGpu(Device &dev, nsajit_context *ctx, const Prepared &p) {
  const Case &c = p.c;
  Outcome r;
  DeviceCase d(dev, p);
  r.error = d.forward(ctx);
  if (!r.error.empty())
    return r;
  dev.synchronize();
  std::vector<float> out = p.o.unpack(d.o.download<std::uint16_t>(p.o.storageElems()), c.fp16);
  std::vector<float> lseOut = d.lse.download<float>(std::size_t(c.b) * c.t * c.hq());
  r.relErr = relativeErrorOrAbs(out, p.refO);
  r.lseErr = ref::maxAbsError(lseOut, p.refLse);
  const double tol = c.fp16 ? 1e-2 : 2e-2;
  r.ok = std::isfinite(r.relErr) && r.relErr <= tol && std::isfinite(r.lseErr) && r.lseErr <= 2e-2;
  if (!r.ok)
    r.error = "outside tolerance (out rel " + std::to_string(tol) + ", lse abs 2e-2)";
  return r;
}

double relativeErrorOrAbs(const std::vector<float> &got, const std::vector<double> &want) {
  // An all-zero reference (nothing visible) has no relative error to speak of.
  bool allZero = std::all_of(want.begin(), want.end(), [](double x) { return x == 0.0; });
  return allZero ? ref::maxAbsError(got, want) : ref::relativeError(got, want);
}

} // namespace nsajit::check
