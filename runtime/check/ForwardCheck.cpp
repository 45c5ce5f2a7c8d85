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
                  indices == IndexMode::Hostile ? " hostile-indices" : "");
  if (branch == Br::Swa) std::snprintf(buf + n0, sizeof buf - n0, " w=%d", w);
  std::string s = buf;
  if (padded) s += " strided";
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


Outcome runOnGpu(Device &dev, nsajit_context *ctx, const Prepared &p) {
  const Case &c = p.c;
  Outcome r;
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  cfg.dtype = c.fp16 ? NSAJIT_DTYPE_FP16 : NSAJIT_DTYPE_BF16;
  cfg.head_dim_qk = c.dk, cfg.head_dim_v = c.dv, cfg.num_kv_heads = c.h, cfg.group = c.g;
  cfg.cmp_block = c.l, cfg.cmp_stride = c.d, cfg.slc_block = c.lsel, cfg.slc_count = c.n, cfg.window = c.w;

  auto qRaw = p.q.pack(c.fp16), kRaw = p.k.pack(c.fp16), vRaw = p.v.pack(c.fp16);
  Buffer q(dev, qRaw.size() * 2), k(dev, kRaw.size() * 2), v(dev, vRaw.size() * 2);
  Buffer o(dev, p.o.storageElems() * 2), lse(dev, std::size_t(c.b) * c.t * c.hq() * 4);
  Buffer idx(dev, std::max<std::size_t>(p.idx.size(), 1) * 4);
  q.upload(qRaw), k.upload(kRaw), v.upload(vRaw);
  if (!p.idx.empty()) idx.upload(p.idx);
  dev.fill(o.ptr, 0xFF, o.bytes); // NaN everywhere: every element must be written
  dev.fill(lse.ptr, 0xFF, lse.bytes);

  nsajit_tensor tq = p.q.view(q.ptr), tk = p.k.view(k.ptr), tv = p.v.view(v.ptr), to = p.o.view(o.ptr);
  nsajit_tensor tl = {lse.ptr, std::int64_t(c.t) * c.hq(), c.hq(), 1};
  nsajit_tensor ti = {idx.ptr, std::int64_t(c.t) * c.h * c.n, std::int64_t(c.h) * c.n, c.n};
  nsajit_status st = NSAJIT_OK;
  switch (c.branch) {
  case Br::Cmp: st = nsajit_compressed_forward(ctx, &cfg, c.b, c.t, &tq, &tk, &tv, &to, &tl, nullptr); break;
  case Br::Slc: st = nsajit_selected_forward(ctx, &cfg, c.b, c.t, &tq, &tk, &tv, &ti, &to, &tl, nullptr); break;
  case Br::Swa: st = nsajit_window_forward(ctx, &cfg, c.b, c.t, &tq, &tk, &tv, &to, &tl, nullptr); break;
  }
  if (st != NSAJIT_OK) {
    r.error = std::string(nsajit_status_string(st)) + ": " + nsajit_last_error();
    return r;
  }
  dev.synchronize();
  std::vector<float> out = p.o.unpack(o.download<std::uint16_t>(p.o.storageElems()), c.fp16);
  std::vector<float> lseOut = lse.download<float>(std::size_t(c.b) * c.t * c.hq());
  r.relErr = ref::relativeError(out, p.refO);
  r.lseErr = ref::maxAbsError(lseOut, p.refLse);
  // An all-zero reference (no query sees a key) has no relative error to speak of.
  bool refAllZero = std::all_of(p.refO.begin(), p.refO.end(), [](double x) { return x == 0.0; });
  if (refAllZero)
    r.relErr = ref::maxAbsError(out, p.refO);
  const double tol = c.fp16 ? 1e-2 : 2e-2;
  r.ok = std::isfinite(r.relErr) && r.relErr <= tol && std::isfinite(r.lseErr) && r.lseErr <= 2e-2;
  if (!r.ok)
    r.error = "outside tolerance (out rel " + std::to_string(tol) + ", lse abs 2e-2)";
  return r;
}

} // namespace nsajit::check
