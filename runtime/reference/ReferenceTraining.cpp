// Float64 CPU reference for training NSA: backward of the three attention
// branches (with their gates), backward of the compression phi, and the whole
// NSA layer forward / backward composed from them. See Reference.h for the maths
// and argument conventions. Naive loops, all arithmetic in double; the key lists
// come from ReferenceDetail.h, shared with the forward, so forward and backward
// attend exactly the same keys.
#include "runtime/reference/Reference.h"
#include "runtime/reference/ReferenceDetail.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <string_view>
#include <utility>

namespace nsajit::ref {

using namespace detail;

namespace {

// Backward of one attention row. qrow [Dk]; keys: key positions (possibly
// repeated) into kBase / vBase with strides kStride / vStride; gate g; dout [Dv].
// Accumulates into dqRow [Dk], dkBase / dvBase (same strides as k / v); returns
// dgate = dout . O. No key: nothing to do, dgate = 0.
double attendRowBackward(const double *qrow, int Dk, int Dv, double scale,
                         const std::vector<int> &keys, const double *kBase, std::size_t kStride,
                         const double *vBase, std::size_t vStride, double g, const double *dout,
                         double *dqRow, double *dkBase, double *dvBase) {
  if (keys.empty())
    return 0.0;
  const std::size_t nk = keys.size();
  // Forward recomputation: P (max-subtracted softmax) and O = P V.
  std::vector<double> p(nk);
  double mx = kNegInf;
  for (std::size_t j = 0; j < nk; ++j) {
    const double *krow = kBase + sz(keys[j]) * kStride;
    double dot = 0.0;
    for (int x = 0; x < Dk; ++x)
      dot += qrow[x] * krow[x];
    p[j] = scale * dot;
    mx = std::max(mx, p[j]);
  }
  double sum = 0.0;
  for (double &pj : p) {
    pj = std::exp(pj - mx);
    sum += pj;
  }
  std::vector<double> o(sz(Dv), 0.0);
  for (std::size_t j = 0; j < nk; ++j) {
    p[j] /= sum;
    const double *vrow = vBase + sz(keys[j]) * vStride;
    for (int x = 0; x < Dv; ++x)
      o[x] += p[j] * vrow[x];
  }
  // dgate = dout . O; the branch's output gradient is dO = g * dout.
  double dgate = 0.0;
  std::vector<double> dO(sz(Dv));
  for (int x = 0; x < Dv; ++x) {
    dgate += dout[x] * o[x];
    dO[x] = g * dout[x];
  }
  double delta = 0.0;  // rowsum(dO * O)
  for (int x = 0; x < Dv; ++x)
    delta += dO[x] * o[x];
  for (std::size_t j = 0; j < nk; ++j) {
    const double *krow = kBase + sz(keys[j]) * kStride;
    const double *vrow = vBase + sz(keys[j]) * vStride;
    double *dkRow = dkBase + sz(keys[j]) * kStride;
    double *dvRow = dvBase + sz(keys[j]) * vStride;
    double dp = 0.0;
    for (int x = 0; x < Dv; ++x)
      dp += dO[x] * vrow[x];
    const double ds = p[j] * (dp - delta);
    for (int x = 0; x < Dk; ++x) {
      dqRow[x] += scale * ds * krow[x];
      dkRow[x] += scale * ds * qrow[x];
    }
    for (int x = 0; x < Dv; ++x)
      dvRow[x] += p[j] * dO[x];
  }
  return dgate;
}

// Shared driver: every (b, t, hq) row attends keysFor(b, t, kvh) of k / v (kvLen
// tokens). Sizes of q / k / v are checked by the caller.
template <typename KeysFor>
void attendAllBackward(std::string_view fn, const Dims &dims, int kvLen, double scale,
                       std::span<const double> q, std::span<const double> k,
                       std::span<const double> v, std::span<const double> gate,
                       std::span<const double> dout, std::vector<double> &dq,
                       std::vector<double> &dk, std::vector<double> &dv,
                       std::vector<double> &dgate, KeysFor keysFor) {
  const int HQ = dims.HQ();
  const std::size_t rows = sz(dims.B) * dims.T * HQ;
  if (!gate.empty())
    checkSize(fn, "gate", gate.size(), rows);
  checkSize(fn, "dout", dout.size(), rows * dims.Dv);
  dq.assign(rows * dims.Dk, 0.0);
  dk.assign(sz(dims.B) * kvLen * dims.H * dims.Dk, 0.0);
  dv.assign(sz(dims.B) * kvLen * dims.H * dims.Dv, 0.0);
  dgate.assign(rows, 0.0);
  std::vector<int> keys;
  for (int b = 0; b < dims.B; ++b)
    for (int t = 0; t < dims.T; ++t)
      for (int kvh = 0; kvh < dims.H; ++kvh) {
        keys.clear();
        keysFor(b, t, kvh, keys);
        const std::size_t kOff = at4(kvLen, dims.H, dims.Dk, b, 0, kvh);
        const std::size_t vOff = at4(kvLen, dims.H, dims.Dv, b, 0, kvh);
        for (int g = 0; g < dims.G; ++g) {
          const int hq = kvh * dims.G + g;
          const std::size_t row = (sz(b) * dims.T + t) * HQ + hq;
          dgate[row] = attendRowBackward(
              q.data() + row * dims.Dk, dims.Dk, dims.Dv, scale, keys, k.data() + kOff,
              sz(dims.H) * dims.Dk, v.data() + vOff, sz(dims.H) * dims.Dv,
              gate.empty() ? 1.0 : gate[row], dout.data() + row * dims.Dv, dq.data() + row * dims.Dk,
              dk.data() + kOff, dv.data() + vOff);
        }
      }
}

} // namespace

// ---- backward of the attention branches ----------------------------------------

void compressedAttentionBackward(const Dims &dims, int l, int d, double scale,
                                 std::span<const double> q, std::span<const double> kc,
                                 std::span<const double> vc, std::span<const double> gate,
                                 std::span<const double> dout, std::vector<double> &dq,
                                 std::vector<double> &dk, std::vector<double> &dv,
                                 std::vector<double> &dgate) {
  constexpr std::string_view fn = "compressedAttentionBackward";
  checkCompression(fn, l, d);
  const int Tc = numCompressed(dims.T, l, d);
  checkQkv(fn, dims, Tc, q, kc, vc);
  attendAllBackward(fn, dims, Tc, scale, q, kc, vc, gate, dout, dq, dk, dv, dgate,
                    [&](int, int t, int, std::vector<int> &keys) {
                      compressedKeys(t, l, d, Tc, keys);
                    });
}

void selectedAttentionBackward(const Dims &dims, int lsel, int n, double scale,
                               std::span<const double> q, std::span<const double> k,
                               std::span<const double> v, std::span<const std::int32_t> idx,
                               std::span<const double> gate, std::span<const double> dout,
                               std::vector<double> &dq, std::vector<double> &dk,
                               std::vector<double> &dv, std::vector<double> &dgate) {
  constexpr std::string_view fn = "selectedAttentionBackward";
  if (lsel < 1 || n < 0)
    fail(fn, fmt::format("bad lsel={} n={}", lsel, n));
  checkQkv(fn, dims, dims.T, q, k, v);
  checkSize(fn, "idx", idx.size(), sz(dims.B) * dims.T * dims.H * n);
  const int NB = numSelectionBlocks(dims.T, lsel);
  attendAllBackward(fn, dims, dims.T, scale, q, k, v, gate, dout, dq, dk, dv, dgate,
                    [&](int b, int t, int kvh, std::vector<int> &keys) {
                      selectedKeys(idx.data() + at4(dims.T, dims.H, n, b, t, kvh), n, lsel, NB,
                                   dims.T, t, keys);
                    });
}

void windowAttentionBackward(const Dims &dims, int w, double scale, std::span<const double> q,
                             std::span<const double> k, std::span<const double> v,
                             std::span<const double> gate, std::span<const double> dout,
                             std::vector<double> &dq, std::vector<double> &dk,
                             std::vector<double> &dv, std::vector<double> &dgate) {
  constexpr std::string_view fn = "windowAttentionBackward";
  if (w < 1)
    fail(fn, fmt::format("bad window w={} (need w >= 1)", w));
  checkQkv(fn, dims, dims.T, q, k, v);
  attendAllBackward(fn, dims, dims.T, scale, q, k, v, gate, dout, dq, dk, dv, dgate,
                    [&](int, int t, int, std::vector<int> &keys) { windowKeys(t, w, keys); });
}

void causalAttentionBackward(const Dims &dims, double scale, std::span<const double> q,
                             std::span<const double> k, std::span<const double> v,
                             std::span<const double> gate, std::span<const double> dout,
                             std::vector<double> &dq, std::vector<double> &dk,
                             std::vector<double> &dv, std::vector<double> &dgate) {
  windowAttentionBackward(dims, std::max(dims.T, 1), scale, q, k, v, gate, dout, dq, dk, dv,
                          dgate);
}

// Float overloads: convert (exactly) and run the double code.
void compressedAttentionBackward(const Dims &dims, int l, int d, double scale,
                                 std::span<const float> q, std::span<const float> kc,
                                 std::span<const float> vc, std::span<const float> gate,
                                 std::span<const float> dout, std::vector<double> &dq,
                                 std::vector<double> &dk, std::vector<double> &dv,
                                 std::vector<double> &dgate) {
  compressedAttentionBackward(dims, l, d, scale, toDouble(q), toDouble(kc), toDouble(vc),
                              toDouble(gate), toDouble(dout), dq, dk, dv, dgate);
}

void selectedAttentionBackward(const Dims &dims, int lsel, int n, double scale,
                               std::span<const float> q, std::span<const float> k,
                               std::span<const float> v, std::span<const std::int32_t> idx,
                               std::span<const float> gate, std::span<const float> dout,
                               std::vector<double> &dq, std::vector<double> &dk,
                               std::vector<double> &dv, std::vector<double> &dgate) {
  selectedAttentionBackward(dims, lsel, n, scale, toDouble(q), toDouble(k), toDouble(v), idx,
                            toDouble(gate), toDouble(dout), dq, dk, dv, dgate);
}

void windowAttentionBackward(const Dims &dims, int w, double scale, std::span<const float> q,
                             std::span<const float> k, std::span<const float> v,
                             std::span<const float> gate, std::span<const float> dout,
                             std::vector<double> &dq, std::vector<double> &dk,
                             std::vector<double> &dv, std::vector<double> &dgate) {
  windowAttentionBackward(dims, w, scale, toDouble(q), toDouble(k), toDouble(v), toDouble(gate),
                          toDouble(dout), dq, dk, dv, dgate);
}

void causalAttentionBackward(const Dims &dims, double scale, std::span<const float> q,
                             std::span<const float> k, std::span<const float> v,
                             std::span<const float> gate, std::span<const float> dout,
                             std::vector<double> &dq, std::vector<double> &dk,
                             std::vector<double> &dv, std::vector<double> &dgate) {
  causalAttentionBackward(dims, scale, toDouble(q), toDouble(k), toDouble(v), toDouble(gate),
                          toDouble(dout), dq, dk, dv, dgate);
}

// ---- backward of the compression (phi) -----------------------------------------

void compressMeanPoolBackward(int B, int T, int H, int D, int l, int d,
                              std::span<const double> dout, std::vector<double> &dx) {
  constexpr std::string_view fn = "compressMeanPoolBackward";
  checkCompression(fn, l, d);
  checkPoolDims(fn, B, T, H, D);
  const int Tc = numCompressed(T, l, d);
  checkSize(fn, "dout", dout.size(), sz(B) * Tc * H * D);
  dx.assign(sz(B) * T * H * D, 0.0);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < Tc; ++i)
      for (int h = 0; h < H; ++h) {
        const double *g = dout.data() + at4(Tc, H, D, b, i, h);
        for (int p = 0; p < l; ++p) {
          double *row = dx.data() + at4(T, H, D, b, i * d + p, h);
          for (int e = 0; e < D; ++e)
            row[e] += g[e] / l;
        }
      }
}

void compressMeanPoolBackward(int B, int T, int H, int D, int l, int d,
                              std::span<const float> dout, std::vector<double> &dx) {
  compressMeanPoolBackward(B, T, H, D, l, d, toDouble(dout), dx);
}

void compressWeightedBackward(int B, int T, int H, int D, int l, int d,
                              std::span<const double> weights, std::span<const double> x,
                              std::span<const double> dout, std::vector<double> &dx,
                              std::vector<double> &dweights) {
  constexpr std::string_view fn = "compressWeightedBackward";
  checkCompression(fn, l, d);
  checkPoolDims(fn, B, T, H, D);
  const int Tc = numCompressed(T, l, d);
  checkSize(fn, "weights", weights.size(), sz(l));
  checkSize(fn, "x", x.size(), sz(B) * T * H * D);
  checkSize(fn, "dout", dout.size(), sz(B) * Tc * H * D);
  dx.assign(sz(B) * T * H * D, 0.0);
  dweights.assign(sz(l), 0.0);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < Tc; ++i)
      for (int h = 0; h < H; ++h) {
        const double *g = dout.data() + at4(Tc, H, D, b, i, h);
        for (int p = 0; p < l; ++p) {
          const std::size_t off = at4(T, H, D, b, i * d + p, h);
          for (int e = 0; e < D; ++e) {
            dx[off + e] += weights[p] * g[e];
            dweights[p] += x[off + e] * g[e];
          }
        }
      }
}

void compressWeightedBackward(int B, int T, int H, int D, int l, int d,
                              std::span<const float> weights, std::span<const float> x,
                              std::span<const float> dout, std::vector<double> &dx,
                              std::vector<double> &dweights) {
  compressWeightedBackward(B, T, H, D, l, d, toDouble(weights), toDouble(x), toDouble(dout), dx,
                           dweights);
}

// ---- whole NSA -----------------------------------------------------------------

namespace {

// The inputs with every optional K/V resolved to the tensor each branch uses.
struct Resolved {
  std::span<const double> kCmp, vCmp, kSlc, vSlc, kSwa, vSwa;
  bool kCmpShared, vCmpShared, kSlcShared, vSlcShared, kSwaShared, vSwaShared;
  double scale;
  int Tc;
};

Resolved resolve(std::string_view fn, const Dims &dims, const NsaConfig &cfg,
                 const NsaInputs &in) {
  checkDims(fn, dims);
  checkCompression(fn, cfg.l, cfg.d);
  if (cfg.lsel < 1 || cfg.lsel % cfg.d != 0)
    fail(fn, fmt::format("bad selection block lsel={} (need lsel >= 1, lsel % d == 0, d={})",
                         cfg.lsel, cfg.d));
  if (cfg.n < 1 || cfg.w < 1)
    fail(fn, fmt::format("bad n={} w={} (need n >= 1, w >= 1)", cfg.n, cfg.w));
  const std::size_t rows = sz(dims.B) * dims.T * dims.HQ();
  const std::size_t kSize = sz(dims.B) * dims.T * dims.H * dims.Dk;
  const std::size_t vSize = sz(dims.B) * dims.T * dims.H * dims.Dv;
  checkSize(fn, "q", in.q.size(), rows * dims.Dk);
  if (!in.k.empty())
    checkSize(fn, "k", in.k.size(), kSize);
  if (!in.v.empty())
    checkSize(fn, "v", in.v.size(), vSize);
  Resolved r{};
  auto pick = [&](std::string_view what, std::span<const double> own, std::span<const double> shared,
                  std::size_t want, std::span<const double> &out, bool &isShared) {
    isShared = own.empty();
    out = isShared ? shared : own;
    if (out.empty() && want != 0)
      fail(fn, fmt::format("{} is empty and so is the shared tensor it falls back to", what));
    checkSize(fn, what, out.size(), want);
  };
  pick("kCmp", in.kCmp, in.k, kSize, r.kCmp, r.kCmpShared);
  pick("vCmp", in.vCmp, in.v, vSize, r.vCmp, r.vCmpShared);
  pick("kSlc", in.kSlc, in.k, kSize, r.kSlc, r.kSlcShared);
  pick("vSlc", in.vSlc, in.v, vSize, r.vSlc, r.vSlcShared);
  pick("kSwa", in.kSwa, in.k, kSize, r.kSwa, r.kSwaShared);
  pick("vSwa", in.vSwa, in.v, vSize, r.vSwa, r.vSwaShared);
  if (cfg.compression == Compression::Weighted) {
    checkSize(fn, "weightsK", in.weightsK.size(), sz(cfg.l));
    checkSize(fn, "weightsV", in.weightsV.size(), sz(cfg.l));
  } else if (!in.weightsK.empty() || !in.weightsV.empty()) {
    fail(fn, "weightsK / weightsV must be empty with Compression::Mean");
  }
  for (auto [what, g] : {std::pair{"gCmp", in.gCmp}, std::pair{"gSlc", in.gSlc},
                         std::pair{"gSwa", in.gSwa}})
    if (!g.empty())
      checkSize(fn, what, g.size(), rows);
  if (!in.idx.empty())
    checkSize(fn, "idx", in.idx.size(), sz(dims.B) * dims.T * dims.H * cfg.n);
  r.scale = cfg.scale > 0 ? cfg.scale : 1.0 / std::sqrt(static_cast<double>(dims.Dk));
  r.Tc = numCompressed(dims.T, cfg.l, cfg.d);
  return r;
}

// phi of one tensor with D features.
void compress(const Dims &dims, const NsaConfig &cfg, int D, std::span<const double> weights,
              std::span<const double> x, std::vector<double> &out) {
  if (cfg.compression == Compression::Weighted)
    compressWeighted(dims.B, dims.T, dims.H, D, cfg.l, cfg.d, weights, x, out);
  else
    compressMeanPool(dims.B, dims.T, dims.H, D, cfg.l, cfg.d, x, out);
}

// phi backward of one tensor: dx from dout; dweights only for Weighted.
void compressBackward(const Dims &dims, const NsaConfig &cfg, int D,
                      std::span<const double> weights, std::span<const double> x,
                      std::span<const double> dout, std::vector<double> &dx,
                      std::vector<double> &dweights) {
  if (cfg.compression == Compression::Weighted) {
    compressWeightedBackward(dims.B, dims.T, dims.H, D, cfg.l, cfg.d, weights, x, dout, dx,
                             dweights);
  } else {
    compressMeanPoolBackward(dims.B, dims.T, dims.H, D, cfg.l, cfg.d, dout, dx);
    dweights.clear();
  }
}

// kc, vc and the selection (given or computed from q, kc).
void compressAndSelect(const Dims &dims, const NsaConfig &cfg, const NsaInputs &in,
                       const Resolved &r, std::vector<double> &kc, std::vector<double> &vc,
                       std::vector<std::int32_t> &idx) {
  compress(dims, cfg, dims.Dk, in.weightsK, r.kCmp, kc);
  compress(dims, cfg, dims.Dv, in.weightsV, r.vCmp, vc);
  if (!in.idx.empty())
    idx.assign(in.idx.begin(), in.idx.end());
  else
    selectTopN(dims, cfg.l, cfg.d, cfg.lsel, cfg.n, r.scale, in.q, std::span<const double>(kc),
               idx, cfg.numInitial, cfg.numLocal);
}

// Owns double copies of float inputs; view() gives the NsaInputs over them.
struct Converted {
  std::vector<double> q, k, v, kCmp, vCmp, kSlc, vSlc, kSwa, vSwa, wK, wV, gCmp, gSlc, gSwa;
  std::span<const std::int32_t> idx;
  explicit Converted(const NsaInputsF &in)
      : q(toDouble(in.q)), k(toDouble(in.k)), v(toDouble(in.v)), kCmp(toDouble(in.kCmp)),
        vCmp(toDouble(in.vCmp)), kSlc(toDouble(in.kSlc)), vSlc(toDouble(in.vSlc)),
        kSwa(toDouble(in.kSwa)), vSwa(toDouble(in.vSwa)), wK(toDouble(in.weightsK)),
        wV(toDouble(in.weightsV)), gCmp(toDouble(in.gCmp)), gSlc(toDouble(in.gSlc)),
        gSwa(toDouble(in.gSwa)), idx(in.idx) {}
  NsaInputs view() const {
    NsaInputs d;
    d.q = q, d.k = k, d.v = v, d.kCmp = kCmp, d.vCmp = vCmp, d.kSlc = kSlc, d.vSlc = vSlc;
    d.kSwa = kSwa, d.vSwa = vSwa, d.weightsK = wK, d.weightsV = wV;
    d.gCmp = gCmp, d.gSlc = gSlc, d.gSwa = gSwa, d.idx = idx;
    return d;
  }
};

} // namespace

void nsaForward(const Dims &dims, const NsaConfig &cfg, const NsaInputs &in,
                NsaForwardResult &out) {
  const Resolved r = resolve("nsaForward", dims, cfg, in);
  compressAndSelect(dims, cfg, in, r, out.kc, out.vc, out.idx);
  compressedAttention(dims, cfg.l, cfg.d, r.scale, in.q, std::span<const double>(out.kc),
                      std::span<const double>(out.vc), out.oCmp, out.lseCmp);
  selectedAttention(dims, cfg.lsel, cfg.n, r.scale, in.q, r.kSlc, r.vSlc, out.idx, out.oSlc,
                    out.lseSlc);
  windowAttention(dims, cfg.w, r.scale, in.q, r.kSwa, r.vSwa, out.oSwa, out.lseSwa);
  const std::vector<double> ones(sz(dims.B) * dims.T * dims.HQ(), 1.0);
  auto gateOr1 = [&](std::span<const double> g) {
    return g.empty() ? std::span<const double>(ones) : g;
  };
  gatedCombine(dims, out.oCmp, out.oSlc, out.oSwa, gateOr1(in.gCmp), gateOr1(in.gSlc),
               gateOr1(in.gSwa), out.o);
}

void nsaForward(const Dims &dims, const NsaConfig &cfg, const NsaInputsF &in,
                NsaForwardResult &out) {
  const Converted c(in);
  nsaForward(dims, cfg, c.view(), out);
}

void nsaBackward(const Dims &dims, const NsaConfig &cfg, const NsaInputs &in,
                 std::span<const double> dout, NsaGradients &grads) {
  constexpr std::string_view fn = "nsaBackward";
  const Resolved r = resolve(fn, dims, cfg, in);
  checkSize(fn, "dout", dout.size(), sz(dims.B) * dims.T * dims.HQ() * dims.Dv);
  std::vector<double> kc, vc;
  compressAndSelect(dims, cfg, in, r, kc, vc, grads.idx);

  std::vector<double> dqCmp, dqSlc, dqSwa;
  compressedAttentionBackward(dims, cfg.l, cfg.d, r.scale, in.q, std::span<const double>(kc),
                              std::span<const double>(vc), in.gCmp, dout, dqCmp, grads.dkc,
                              grads.dvc, grads.dgCmp);
  selectedAttentionBackward(dims, cfg.lsel, cfg.n, r.scale, in.q, r.kSlc, r.vSlc, grads.idx,
                            in.gSlc, dout, dqSlc, grads.dkSlc, grads.dvSlc, grads.dgSlc);
  windowAttentionBackward(dims, cfg.w, r.scale, in.q, r.kSwa, r.vSwa, in.gSwa, dout, dqSwa,
                          grads.dkSwa, grads.dvSwa, grads.dgSwa);
  compressBackward(dims, cfg, dims.Dk, in.weightsK, r.kCmp, grads.dkc, grads.dkCmp,
                   grads.dweightsK);
  compressBackward(dims, cfg, dims.Dv, in.weightsV, r.vCmp, grads.dvc, grads.dvCmp,
                   grads.dweightsV);

  grads.dq.assign(dqCmp.size(), 0.0);
  for (std::size_t i = 0; i < dqCmp.size(); ++i)
    grads.dq[i] = dqCmp[i] + dqSlc[i] + dqSwa[i];

  // Shared k / v: sum of the branches that fell back to them.
  auto sumShared = [](std::span<const double> shared, std::vector<double> &dst,
                      std::initializer_list<std::pair<bool, const std::vector<double> *>> parts) {
    dst.clear();
    if (shared.empty())
      return;
    dst.assign(shared.size(), 0.0);
    for (const auto &[used, g] : parts)
      if (used)
        for (std::size_t i = 0; i < dst.size(); ++i)
          dst[i] += (*g)[i];
  };
  sumShared(in.k, grads.dk,
            {{r.kCmpShared, &grads.dkCmp}, {r.kSlcShared, &grads.dkSlc},
             {r.kSwaShared, &grads.dkSwa}});
  sumShared(in.v, grads.dv,
            {{r.vCmpShared, &grads.dvCmp}, {r.vSlcShared, &grads.dvSlc},
             {r.vSwaShared, &grads.dvSwa}});
}

void nsaBackward(const Dims &dims, const NsaConfig &cfg, const NsaInputsF &in,
                 std::span<const float> dout, NsaGradients &grads) {
  const Converted c(in);
  nsaBackward(dims, cfg, c.view(), toDouble(dout), grads);
}

} // namespace nsajit::ref
