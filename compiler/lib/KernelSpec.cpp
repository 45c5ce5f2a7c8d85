#include "nsajit/compiler/KernelSpec.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

namespace nsajit {

const char *branchName(Branch b) {
  switch (b) {
  case Branch::Compressed: return "compressed";
  case Branch::Selected: return "selected";
  case Branch::Window: return "window";
  }
  return "?";
}
const char *dtypeName(DType t) { return t == DType::BF16 ? "bf16" : "fp16"; }
const char *archName(Arch a) { return a == Arch::SM80 ? "sm_80" : "sm_90a"; }
const char *passName(KernelPass p) {
  switch (p) {
  case KernelPass::Forward: return "fwd";
  case KernelPass::BackwardPreprocess: return "bwd_pre";
  case KernelPass::BackwardDQ: return "bwd_dq";
  case KernelPass::BackwardDKDV: return "bwd_dkdv";
  case KernelPass::TopN: return "topn";
  case KernelPass::Compress: return "pool";
  case KernelPass::CompressBackward: return "pool_bwd";
  case KernelPass::CompressWeightGrad: return "pool_dw";
  case KernelPass::Combine: return "combine";
  }
  return "?";
}

bool isCompressionPass(KernelPass p) {
  return p == KernelPass::Compress || p == KernelPass::CompressBackward || p == KernelPass::CompressWeightGrad;
}

std::optional<Branch> parseBranch(const std::string &s) {
  if (s == "compressed" || s == "cmp") return Branch::Compressed;
  if (s == "selected" || s == "slc") return Branch::Selected;
  if (s == "window" || s == "swa") return Branch::Window;
  return std::nullopt;
}
std::optional<DType> parseDType(const std::string &s) {
  if (s == "bf16") return DType::BF16;
  if (s == "fp16" || s == "f16") return DType::FP16;
  return std::nullopt;
}
std::optional<Arch> parseArch(const std::string &s) {
  if (s == "sm_80" || s == "sm80") return Arch::SM80;
  if (s == "sm_90a" || s == "sm90a" || s == "sm_90") return Arch::SM90a;
  return std::nullopt;
}

float KernelSpec::effectiveScale() const {
  return scale > 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(headDimQK));
}

std::string KernelSpec::str() const {
  std::string s = fmt::format("{} {} {} {} dk={} dv={} g={}", branchName(branch), passName(pass), dtypeName(dtype),
                              archName(arch), headDimQK, headDimV, group);
  switch (branch) {
  case Branch::Compressed:
    s += fmt::format(" l={} d={}", cmpBlock, cmpStride);
    if (pass == KernelPass::TopN)
      s += fmt::format(" l'={} n={} init={} local={}", slcBlock, slcCount, slcInitial, slcLocal);
    if (isCompressionPass(pass))
      s += cmpWeighted ? " weighted" : " mean";
    break;
  case Branch::Selected: s += fmt::format(" l'={} n={}", slcBlock, slcCount); break;
  case Branch::Window: s += fmt::format(" w={}", window); break;
  }
  s += fmt::format(" scale={:.9g} tile=w{}t{}c{}", effectiveScale(), tile.warps, tile.tokensPerCta,
                   tile.kvChunk);
  return s;
}

bool KernelSpec::operator==(const KernelSpec &o) const { return str() == o.str(); }

std::uint64_t KernelSpec::hash() const {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : str()) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string KernelSpec::kernelName() const {
  return fmt::format("nsa_{}_{}", branchName(branch), passName(pass));
}

namespace {

// The compressed-token scores of a window, summed over all tokens of a CTA
// (each token has 256 to 2048).
constexpr int kTopNWindowScores = 4096;
// Shared memory the default top-n tile stays below (two CTAs per SM). wgmma
// tiles hold a second key chunk: 110 KB keeps 8 tokens of G = 16 with l = d =
// 64 (at 96 KB the tile fell to 4 tokens: H100, T = 64k, top-n 6.6 -> 8.3 ms).
constexpr int kTopNSharedBudget = 96 * 1024;
constexpr int kTopNSharedBudgetWarpgroup = 110 * 1024;
// The most dynamic shared memory a CTA may have (sm_90: 227 KB).
constexpr int kMaxSharedBytes = 227 * 1024;
// Two CTAs share an SM's 228 KB when each takes at most this (1 KB a CTA is reserved).
constexpr int kSharedBytesForTwoCtas = 113 * 1024;
constexpr int kSharedBytesPerSm = 228 * 1024, kReservedBytesPerCta = 1024;
constexpr int kRegistersPerSm = 65536;

// wgmma tiles score a chunk of 64 compressed keys (one wgmma M tile) with whole warpgroups.
bool topNWarpgroupTile(const KernelSpec &s, const TileConfig &t) {
  return s.arch == Arch::SM90a && t.warps % 4 == 0 && t.kvChunk == 64;
}

int topNSharedBudget(const KernelSpec &s, const TileConfig &t) {
  return topNWarpgroupTile(s, t) ? kTopNSharedBudgetWarpgroup : kTopNSharedBudget;
}

TopNWindow topNWindowOf(const KernelSpec &s, int perToken) {
  TopNWindow w;
  // (max: also safe on specs that fail validate())
  const int d = std::max(1, s.cmpStride);
  const int a = std::max(1, s.slcBlock / d), b = std::max(1, s.cmpBlock / d);
  w.blocks = std::max(1, perToken / a);
  w.reach = a + b - 2;
  w.cmpCapacity = a * w.blocks + w.reach + 1;
  return w;
}

// Q rows of the tile, one chunk of compressed keys, and per token: the window's
// compressed-token and block scores, the running list and the next one
// (key, index) and the list's worst key.
int topNSharedBytesWith(const KernelSpec &s, const TileConfig &t, const TopNWindow &w) {
  // wgmma: unpadded swizzled rows and two key chunks (one copied while one is scored).
  const bool warpgroup = topNWarpgroupTile(s, t);
  const int kRow = (s.headDimQK + (warpgroup ? 0 : 8)) * 2;
  return (t.warps * 16 + (warpgroup ? 2 : 1) * t.kvChunk) * kRow +
         t.tokensPerCta * (4 * (w.cmpCapacity + w.blocks) + 16 * s.slcCount + 4);
}

// The tokens share 4096 compressed-token scores a window (256 to 2048 each),
// halved (down to 256) while the tile would not fit its shared budget: shorter
// windows cost a merge more, fewer tokens a key chunk more per token.
TopNWindow topNWindowFor(const KernelSpec &s, const TileConfig &t) {
  int perToken = std::clamp(kTopNWindowScores / std::max(1, t.tokensPerCta), 256, 2048);
  while (perToken > 256 && topNSharedBytesWith(s, t, topNWindowOf(s, perToken)) > topNSharedBudget(s, t))
    perToken /= 2;
  return topNWindowOf(s, perToken);
}

int topNSharedBytes(const KernelSpec &s, const TileConfig &t) { return topNSharedBytesWith(s, t, topNWindowFor(s, t)); }

} // namespace

static bool isOneOf(int v, std::initializer_list<int> allowed) {
  return std::find(allowed.begin(), allowed.end(), v) != allowed.end();
}

std::string validate(const KernelSpec &s) {
  if (!isOneOf(s.headDimQK, {64, 128, 192, 256}))
    return fmt::format("head_dim_qk (Dk) = {} is not supported; allowed: 64, 128, 192, 256", s.headDimQK);
  if (!isOneOf(s.headDimV, {64, 128, 192, 256}))
    return fmt::format("head_dim_v (Dv) = {} is not supported; allowed: 64, 128, 192, 256", s.headDimV);
  if (s.headDimV > s.headDimQK)
    return fmt::format("head_dim_v (Dv) = {} must not exceed head_dim_qk (Dk) = {}", s.headDimV, s.headDimQK);
  if (!isOneOf(s.group, {1, 2, 4, 8, 16, 32}))
    return fmt::format("group (G) = {} is not supported; allowed: 1, 2, 4, 8, 16, 32", s.group);
  if (isCompressionPass(s.pass) && (s.branch != Branch::Compressed || s.headDimV != s.headDimQK))
    return fmt::format("the pooling kernels belong to the compressed branch and pool one tensor (head_dim_qk = "
                       "head_dim_v = D); got the {} branch with Dk = {}, Dv = {}",
                       branchName(s.branch), s.headDimQK, s.headDimV);
  if (s.pass == KernelPass::TopN && s.branch != Branch::Compressed)
    return fmt::format("the top-n kernel belongs to the compressed branch (it reads its lse), not the {} branch",
                       branchName(s.branch));
  if (!(s.scale >= 0.0f) || std::isinf(s.scale))
    return fmt::format("scale = {} must be a finite positive number (or 0 for 1/sqrt(Dk))", s.scale);
  switch (s.branch) {
  case Branch::Compressed:
    if (s.cmpStride < 1 || s.cmpBlock < 1 || s.cmpBlock > 4096)
      return fmt::format("compressed block l = {} and stride d = {} must satisfy 1 <= d <= l <= 4096", s.cmpBlock,
                         s.cmpStride);
    if (s.cmpStride > s.cmpBlock || s.cmpBlock % s.cmpStride != 0)
      return fmt::format("compressed stride d = {} must divide block l = {} (d <= l, l % d == 0)", s.cmpStride,
                         s.cmpBlock);
    if (s.pass == KernelPass::TopN) {
      if (!isOneOf(s.slcBlock, {16, 32, 64, 128}))
        return fmt::format("selection block l' = {} is not supported; allowed: 16, 32, 64, 128", s.slcBlock);
      if (s.slcCount < 1 || s.slcCount > 1024)
        return fmt::format("selected block count n = {} is not supported; allowed: 1..1024", s.slcCount);
      if (s.slcBlock % s.cmpStride != 0)
        return fmt::format("selection block l' = {} must be a multiple of the compressed stride d = {}", s.slcBlock,
                           s.cmpStride);
      if (s.slcInitial < 0 || s.slcLocal < 0 || s.slcInitial + s.slcLocal > s.slcCount)
        return fmt::format("forced blocks (initial {} + local {}) must be >= 0 and at most n = {}", s.slcInitial,
                           s.slcLocal, s.slcCount);
    }
    break;
  case Branch::Selected:
    if (!isOneOf(s.slcBlock, {16, 32, 64, 128}))
      return fmt::format("selection block l' = {} is not supported; allowed: 16, 32, 64, 128", s.slcBlock);
    if (s.slcCount < 1 || s.slcCount > 1024)
      return fmt::format("selected block count n = {} is not supported; allowed: 1..1024", s.slcCount);

    break;
  case Branch::Window:
    if (s.window < 1 || s.window > (1 << 24))
      return fmt::format("window w = {} is not supported; allowed: 1..16777216", s.window);
    break;
  }
  const TileConfig &t = s.tile;
  if (t.warps < 0 || t.warps > 8 || t.tokensPerCta < 0 || t.kvChunk < 0)
    return fmt::format("tile (warps={}, tokens={}, kv_chunk={}) has fields out of range", t.warps, t.tokensPerCta,
                       t.kvChunk);
  if (t.kvChunk != 0 && !isOneOf(t.kvChunk, {16, 32, 64, 128}))
    return fmt::format("tile kv_chunk = {} is not supported; allowed: 16, 32, 64, 128", t.kvChunk);
  // (bwd_pre reads no keys: its kv_chunk is unused.)
  if (s.branch == Branch::Selected && s.pass != KernelPass::BackwardPreprocess && t.kvChunk != 0 &&
      s.slcBlock % t.kvChunk != 0)
    return fmt::format("tile kv_chunk = {} must divide the selection block l' = {}", t.kvChunk, s.slcBlock);
  if (s.pass == KernelPass::BackwardDKDV) {
    if (t.warps != 0 && t.kvChunk != 0 && t.kvChunk != t.warps * 16)
      return fmt::format("tile kv_chunk = {} must be warps x 16 = {} for the dK/dV kernel", t.kvChunk, t.warps * 16);
    if (t.tokensPerCta != 0 && (t.tokensPerCta * s.group) % 16 != 0)
      return fmt::format("tile tokens x G = {} must be a multiple of 16 for the dK/dV kernel",
                         t.tokensPerCta * s.group);
    if (s.branch == Branch::Selected && t.kvChunk != 0 && s.slcBlock % t.kvChunk != 0)
      return fmt::format("tile kv_chunk = {} must divide the selection block l' = {}", t.kvChunk, s.slcBlock);
    return {};
  }
  if (t.warps != 0 && t.tokensPerCta != 0 && t.tokensPerCta * s.group > t.warps * 16)
    return fmt::format("tile holds {} query rows (warps x 16) but tokens x G = {}", t.warps * 16,
                       t.tokensPerCta * s.group);
  if (s.branch == Branch::Selected && (s.pass == KernelPass::Forward || s.pass == KernelPass::BackwardDQ) &&
      t.tokensPerCta > kMaxUnionTokens)
    return fmt::format("tile tokens = {}: the selected {}'s union schedule takes 1..{} tokens per CTA",
                       t.tokensPerCta, s.pass == KernelPass::Forward ? "forward" : "dQ kernel", kMaxUnionTokens);
  if (s.pass == KernelPass::TopN && t.warps != 0 && t.tokensPerCta != 0 && t.kvChunk != 0 &&
      topNSharedBytes(s, t) > kMaxSharedBytes)
    return fmt::format("the top-n tile (warps={}, tokens={}, kv_chunk={}) needs {} bytes of shared memory; at most {} "
                       "are allowed: use fewer tokens or a smaller kv_chunk",
                       t.warps, t.tokensPerCta, t.kvChunk, topNSharedBytes(s, t), kMaxSharedBytes);
  return {};
}

namespace {
// The warp-specialised forward (forwardWarpSpecialised): a ring of three K/V
// chunks (its consumers hold two at a time), 8 token tiles a CTA, a producer
// warpgroup.
constexpr int kSpecialisedStages = 3, kSpecialisedTiles = 8, kProducerThreads = 128;

// Its shared memory: two Q tiles, the ring, the mbarriers (a `full` and an
// `empty` one a buffer and a Q tile) and, for the selected branch, the unions
// of the two tiles and the bitmap that builds a union.
int specialisedForwardBytes(const KernelSpec &s, const TileConfig &t) {
  const int unions = s.branch == Branch::Selected
                         ? 2 * selectedUnionSharedBytes(t.tokensPerCta, s.slcCount) + kUnionBitmapBytes
                         : 0;
  return 2 * t.warps * 16 * s.headDimQK * 2 + kSpecialisedStages * t.kvChunk * (s.headDimQK + s.headDimV) * 2 +
         16 * (kSpecialisedStages + 2) + unions;
}

// Two consumer warpgroups, and the shared memory fits one CTA an SM. The
// selected branch: the union schedule over tiles whose tokens fill the 128 rows
// (tokens x G = 128), in chunks that split a block evenly.
bool specialisedForwardFits(const KernelSpec &s, const TileConfig &t) {
  if (s.pass != KernelPass::Forward || s.arch != Arch::SM90a || t.warps != 8 || t.kvChunk <= 0)
    return false;
  if (s.branch == Branch::Selected &&
      (t.tokensPerCta < 2 || t.tokensPerCta * s.group != t.warps * 16 || s.slcBlock % t.kvChunk != 0))
    return false;
  return specialisedForwardBytes(s, t) <= kMaxSharedBytes;
}
} // namespace

TileConfig defaultTileConfig(const KernelSpec &s) {
  TileConfig t = s.tile;
  int chunkCap = s.headDimQK > 128 ? 32 : 64;
  if (s.pass == KernelPass::Combine) {
    // Elementwise: 8 warps, a 16-byte vector a thread (kvChunk unused).
    if (!t.warps) t.warps = 8;
    if (!t.tokensPerCta) t.tokensPerCta = 1;
    if (!t.kvChunk) t.kvChunk = 16;
    return t;
  }
  if (isCompressionPass(s.pass)) {
    // Pooling is elementwise over the head dim: 2 warps, or 8 for the weight-gradient reduction.
    if (!t.warps) t.warps = s.pass == KernelPass::CompressWeightGrad ? 8 : 2;
    if (!t.tokensPerCta) t.tokensPerCta = 1;
    if (!t.kvChunk) t.kvChunk = 16;
    return t;
  }
  if (s.pass == KernelPass::TopN) {
    // Several tokens share each staged chunk of compressed keys (its L2 reads
    // dominate): 128 query rows (tokens x G) for G >= 16, e.g. 8 tokens of 16
    // heads, else 64 (already 8 tokens or more); fewer tokens where their score
    // windows or lists would take too much shared memory.
    // sm_90a: 64 keys a chunk, the M of one wgmma (S^T = K Q^T), when the warps are
    // whole warpgroups (the default's are: 64 or 128 rows).
    const bool pickWarps = !t.warps;
    if (!t.kvChunk) t.kvChunk = s.arch == Arch::SM90a && (pickWarps || t.warps % 4 == 0) ? 64 : chunkCap;
    auto fitWarps = [&] {
      if (pickWarps) t.warps = std::max(1, (t.tokensPerCta * s.group + 15) / 16);
    };
    if (!t.tokensPerCta) {
      const int rows = pickWarps ? (s.group >= 16 ? 128 : 64) : t.warps * 16;
      t.tokensPerCta = std::max(1, rows / std::max(1, s.group));
      fitWarps();
      while (t.tokensPerCta > 1 && topNSharedBytes(s, t) > topNSharedBudget(s, t)) {
        t.tokensPerCta /= 2;
        fitWarps();
      }
    }
    fitWarps();
    return t;
  }
  if (s.pass == KernelPass::BackwardDKDV) {
    // 16 keys per warp; a step stages 64 query rows (tokens x G), 32 for the
    // large head dims whose dK/dV accumulators already fill the registers.
    // 64 keys (4 warps share each staged step) for every head dim: a warp's
    // registers do not depend on it. The dense wgmma kernels take 128 keys: two
    // warpgroups share each staged step, with the same warps an SM (H100, T = 64k,
    // G = 16: compressed l = 32, d = 16, Dk = 192 31.98 -> 27.84 ms, window Dk = 192
    // 9.71 -> 8.73, Dk = 128 6.63 -> 6.27; bench/results/2026-11-26-h100-session8/s8run5).
    const bool denseWgmma =
        s.branch != Branch::Selected && s.arch == Arch::SM90a && s.headDimQK + s.headDimV <= 320;
    int keys = s.branch == Branch::Selected ? std::min(s.slcBlock, 64) : denseWgmma ? 128 : 64;
    int rows = s.headDimQK > 128 ? 32 : 64;
    if (!t.warps) t.warps = keys / 16;
    if (!t.kvChunk) t.kvChunk = t.warps * 16;
    if (!t.tokensPerCta) t.tokensPerCta = std::max(1, rows / s.group);
    return t;
  }
  if (s.branch == Branch::Selected && (s.pass == KernelPass::Forward || s.pass == KernelPass::BackwardDQ)) {
    // The union schedule over about 32 query rows (2 tokens of G = 16), with 64-key chunks
    // for Dk <= 128, 32 above. H100, T = 64k, G = 16, random / local indices, ms, on the
    // swizzled K/V (s10run8): Dk = 128, 2 tokens x 64 keys 18.3 / 13.2, 4 tokens x 32 keys
    // (the default before) 21.0 / 11.8, 2 x 32 18.6 / 13.8, one token 17.0 / 15.8; Dk = 192,
    // 2 x 32 22.9 / 16.9, 2 x 64 25.0 / 17.8, 4 x 32 26.3 / 14.8, one token 24.5 / 24.1.
    // (Before the swizzled K/V, 4 tokens led with Dk = 128: 13.0 / 24.4 against 26.9 / 25.8
    // for one token.)
    // The dQ kernel: about 32 rows for every Dk (H100, T = 64k, G = 16, bwd_pre + bwd_dq + bwd_dkdv in ms,
    // 1 / 2 / 4 tokens: Dk = 128 random 44.3 / 42.7 / 51.4, local 45.8 / 41.3 / 37.9; Dk = 192 random
    // 57.2 / 59.6 / 72.1, local 60.9 / 53.2 / 51.9; bench/results/2026-11-26-h100-session6/s6run8).
    const int unionRows = 32;
    if (!t.tokensPerCta)
      t.tokensPerCta = t.warps ? std::max(1, t.warps * 16 / s.group) : std::clamp(unionRows / s.group, 2, kMaxUnionTokens);
    if (!t.warps) t.warps = std::max(1, (t.tokensPerCta * s.group + 15) / 16);
    // (The dQ kernel's per-token schedule keeps its larger chunks: one buffer, one warp for G = 16.)
    const bool perTokenDq = s.pass == KernelPass::BackwardDQ && t.tokensPerCta == 1;
    // (One token a CTA keeps 32-key chunks: with 64, Dk = 128 took 20.6 / 20.3 ms against 17.0 / 15.8.)
    // The dQ kernel's wgmma union tiles take 64 keys where chunkCap allows (Dk <= 128; 32
    // above, where two one-warpgroup CTAs then fit an SM: see selectedDqUnionTile).
    KernelSpec filled = s;
    filled.tile = t;
    const bool wideChunk = (s.pass == KernelPass::Forward && s.headDimQK <= 128 && t.tokensPerCta > 1) ||
                           selectedDqWarpgroupTile(filled);
    const int unionChunk = wideChunk ? 64 : 32;
    if (!t.kvChunk)
      t.kvChunk = perTokenDq ? std::min(s.slcBlock, chunkCap) : std::min({s.slcBlock, chunkCap, unionChunk});
  } else if (s.branch == Branch::Selected && s.pass != KernelPass::BackwardPreprocess) {
    if (!t.warps) t.warps = std::max(1, s.group / 16);
    if (!t.tokensPerCta) t.tokensPerCta = 1;
    if (!t.kvChunk) t.kvChunk = std::min(s.slcBlock, chunkCap);
  } else if (s.pass == KernelPass::Forward && s.arch == Arch::SM90a) {
    // wgmma: two warpgroups share each staged chunk (H100, T = 64k, G = 16, Dk = 128:
    // window 3.55 ms, compressed 3.34, against 4.29 / 4.21 with one warpgroup, and
    // 4.83 / 4.78 with mma.sync).
    // Warp-specialised where its shared memory fits: 64-key chunks (the consumers'
    // softmax of one chunk overlaps the P V of the one before; 32-key chunks in a
    // ring of 6 took 15.9 / 4.56 ms for compressed [paper] / [main] against 14.0 /
    // 4.19 with a one-warp producer, s11run3). Else 32-key chunks in a ring of three
    // buffers (forwardStages): with Dk = 128, 64-key chunks in two buffers took
    // 4.80 / 4.66 ms against 3.35 / 3.19 (s9run3, launch included); one warpgroup a
    // CTA stayed slower (4.39 / 4.13).
    if (!t.warps) t.warps = std::max(8, s.group / 16);
    if (!t.tokensPerCta) t.tokensPerCta = std::max(1, t.warps * 16 / s.group);
    if (!t.kvChunk) {
      TileConfig wide = t;
      wide.kvChunk = 64;
      t.kvChunk = specialisedForwardFits(s, wide) ? 64 : 32;
    }
  } else {
    // The dense dQ kernels on sm_90a ("wide"): two warpgroups (128 query rows) share each
    // staged K/V chunk (H100, T = 64k, G = 16, Dk = 192: compressed 24.46 -> 22.69 ms,
    // window 7.86 -> 7.20; s8run5) and take turns issuing their products (the ping-pong,
    // templates/BackwardAttention.cpp). For Dk = 128 two warpgroups first lost (window
    // 5.40 -> 5.53 ms, s8run5); with the ping-pong and 64-key chunks they win: window
    // 4.92-4.98 -> 4.64-4.67 ms, compressed l = 32, d = 16 14.51 -> 14.01-14.06, l = d = 64
    // 4.53-4.61 -> 4.49-4.50 (s15run2).
    const bool wideDq = s.pass == KernelPass::BackwardDQ && s.arch == Arch::SM90a &&
                        s.headDimQK + s.headDimV <= 320;
    if (!t.warps) t.warps = std::max(wideDq ? 8 : 4, s.group / 16);
    if (!t.tokensPerCta) t.tokensPerCta = std::max(1, t.warps * 16 / s.group);
    // The forward kernels keep two chunks in flight: 32 keys a chunk (H100, T = 64k,
    // G = 16, Dk = 128, the tuner: window 5.02 vs 5.73 ms, compressed 4.81 vs 5.62 ms
    // with 64-key chunks). Those wide dQ kernels take 64 keys: with 32, S = Q K^T and
    // dP = dO V^T were m64n32k16 with both operands in shared memory, 3 KB of reads
    // (24 cycles) for 16 cycles of tensor work. H100, T = 64k: compressed [paper]
    // 19.4-20.1 -> 17.1-17.3 ms, window Dk = 192 6.2 -> 5.7-5.9 (s14run1, s14run2).
    if (!t.kvChunk) t.kvChunk = s.pass == KernelPass::Forward ? std::min(chunkCap, 32) : wideDq ? 64 : chunkCap;
  }
  return t;
}

KernelSpec withDefaultTiles(KernelSpec spec) {
  spec.tile = defaultTileConfig(spec);
  return spec;
}

TopNWindow topNWindow(const KernelSpec &s) { return topNWindowFor(s, defaultTileConfig(s)); }

int queryRowsPerCta(const KernelSpec &s) { return defaultTileConfig(s).warps * 16; }
int threadsPerCta(const KernelSpec &s) {
  KernelSpec filled = s;
  filled.tile = defaultTileConfig(s);
  return filled.tile.warps * 32 + forwardProducerThreads(filled);
}

TileConfig selectedSpecialisedTile(const KernelSpec &s) {
  TileConfig t{8, s.group > 0 ? 128 / s.group : 0, 64};
  if (s.branch != Branch::Selected || s.pass != KernelPass::Forward || s.group <= 0 || 128 % s.group != 0 ||
      t.tokensPerCta > kMaxUnionTokens || !specialisedForwardFits(s, t))
    return TileConfig{0, 0, 0};
  return t;
}

TileConfig selectedDqUnionTile(const KernelSpec &s) {
  // One warpgroup of 64 rows (4 tokens of G = 16): its union is smaller than 8
  // tokens' (local indices: 25.6 against 32.5 blocks). H100, T = 64k, G = 16,
  // bwd_pre + bwd_dq + bwd_dkdv in ms, random / local indices (s13run1): Dk =
  // 128 the default 2-token mma.sync union 40.3 / 36.9, 8 tokens (two
  // warpgroups) 50.5 / 33.6, 4 tokens 42.9 / 31.8; Dk = 192 52.3 / 46.6, 68.9
  // / 42.8, 58.5 / 41.5. Its chunk is the dQ default's: 32 keys for Dk > 128,
  // where two CTAs then fit an SM (the first kernel on local [paper] indices:
  // 16.6-16.9 ms against 20.4-20.6 with 64 keys and one CTA; s13run4, s13run5).
  if (s.branch != Branch::Selected || s.pass != KernelPass::BackwardDQ || s.group <= 0 || 64 % s.group != 0)
    return TileConfig{0, 0, 0};
  KernelSpec u = s;
  u.tile = {4, 64 / s.group, 0};
  u.tile = defaultTileConfig(u);
  if (u.tile.tokensPerCta < 2 || u.tile.tokensPerCta > kMaxUnionTokens || s.slcBlock % u.tile.kvChunk != 0 ||
      !selectedDqWarpgroupTile(u))
    return TileConfig{0, 0, 0};
  return u.tile;
}

TileConfig selectedFirstTile(const KernelSpec &s) {
  TileConfig t = selectedSpecialisedTile(s);
  return t.warps ? t : selectedDqUnionTile(s);
}

int selectedUnionLimit(const KernelSpec &s) {
  // The union kernel's cost grows with a tile's union (every row computes every
  // block of it, masked), the mma.sync kernel's far less. H100, T = 64k, G = 16,
  // the union of 8 tokens on local / random indices (32.5 / about 100 blocks):
  // Dk = 128 10.9 / 30.9 ms against 13.3 / 18.2 for the 2-token mma.sync union,
  // Dk = 192 12.6 / 36.1 against 17.0 / 22.8 (s12run1). About 0.33 ms a block of
  // the average union, so the two break even at 40-57 blocks: 5n/2 = 40 for n = 16.
  // The dQ schedule's first kernel (unions of 4 tokens) takes the same limit;
  // its own break-even was not measured.
  return 5 * s.slcCount / 2;
}

int selectedUnionSharedBytes(int tokens, int n) {
  auto roundUp16 = [](int bytes) { return (bytes + 15) / 16 * 16; };
  const int entries = tokens * n;
  return 3 * roundUp16(4 * entries) + roundUp16(entries * tokens) + 16;
}

// Shared memory, rows padded by 8 elements (16 bytes) so the fragment loads of
// a warp hit 32 distinct banks:
//   forward:    Q rows, two K/V chunk buffers (a two-stage pipeline); the
//               selected branch's union schedule adds its block lists;
//   bwd dq:     Q rows, dO rows, two K/V chunk buffers (a two-stage pipeline; one for
//               the selected branch's per-token schedule, whose union schedule adds
//               its block lists);
//   bwd dkdv:   the CTA's K and V keys, a step of Q and dO rows, their lse/delta/gate/
//               multiplicity (4 floats a row), the step's tokens (all
//               twice: a two-stage pipeline), 8 bytes for the split walk, the warps'
//               totals and (selected) a window's token list; with wgmma the rows are
//               not padded;
//   bwd pre:    none;
//   top-n:      see topNSharedBytes.
bool topNUsesWarpgroupMma(const KernelSpec &s) { return topNWarpgroupTile(s, defaultTileConfig(s)); }

bool selectedDqWarpgroupTile(const KernelSpec &s) {
  // The union schedule over whole warpgroups whose rows are all tokens' (8 tokens of G = 16).
  const TileConfig &t = s.tile;
  return s.branch == Branch::Selected && s.pass == KernelPass::BackwardDQ && s.arch == Arch::SM90a &&
         t.warps % 4 == 0 && t.tokensPerCta > 1 && t.tokensPerCta * s.group == t.warps * 16 &&
         s.headDimQK + s.headDimV <= 320;
}

bool backwardUsesWarpgroupMma(const KernelSpec &s) {
  if (s.arch != Arch::SM90a || s.tile.warps % 4 != 0)
    return false;
  if (s.pass == KernelPass::BackwardDQ)
    return s.branch != Branch::Selected || selectedDqWarpgroupTile(s);
  return s.pass == KernelPass::BackwardDKDV && s.headDimQK + s.headDimV <= 320;
}

bool forwardUsesWarpgroupMma(const KernelSpec &s) {
  if (s.branch == Branch::Selected) // only its warp-specialised union tiles
    return forwardWarpSpecialised(s);
  return s.pass == KernelPass::Forward && s.arch == Arch::SM90a && s.tile.warps % 4 == 0;
}

bool forwardWarpSpecialised(const KernelSpec &s) { return specialisedForwardFits(s, defaultTileConfig(s)); }

int forwardTilesPerCta(const KernelSpec &s) {
  // A CTA walks 8 token tiles, so a tile's Q and first chunks are staged while
  // the consumers finish the tile before (one CTA an SM exposed each CTA's start
  // and end). H100, T = 64k, window / compressed [paper] ms, 1 / 4 / 8 / 16
  // tiles: 3.57 / 3.34 / 3.30 / 3.46 and 11.1 / 11.0 / 10.5 / 10.8 (s11run5).
  return forwardWarpSpecialised(s) ? kSpecialisedTiles : 1;
}

int forwardProducerThreads(const KernelSpec &s) {
  // A warpgroup: setmaxnreg moves registers in warpgroups, and 128 threads
  // issue a chunk's copies fast enough (one warp kept the consumers waiting:
  // compressed [paper] 14.0 ms against 10.6 with four; s11run3, s11run4).
  return forwardWarpSpecialised(s) ? kProducerThreads : 0;
}

namespace {
int warpgroupForwardBytes(const TileConfig &t, const KernelSpec &s, int stages) {
  return t.warps * 16 * s.headDimQK * 2 + stages * t.kvChunk * (s.headDimQK + s.headDimV) * 2;
}
} // namespace

int forwardStages(const KernelSpec &s) {
  // Three buffers (a chunk's copies get two steps to land) unless the third
  // would cost the second CTA an SM (H100, T = 64k, Dk = 192, 32-key chunks:
  // window 4.12 -> 3.77 ms, compressed l = 32, d = 16 13.8 -> 12.7 with three;
  // four, one CTA an SM: 4.90 / 15.3; s9run3).
  KernelSpec filled = s;
  filled.tile = defaultTileConfig(s);
  if (!forwardUsesWarpgroupMma(filled))
    return 2;
  if (forwardWarpSpecialised(s))
    return kSpecialisedStages;
  const int two = warpgroupForwardBytes(filled.tile, s, 2), three = warpgroupForwardBytes(filled.tile, s, 3);
  const bool keepsTwoCtas = three <= kSharedBytesForTwoCtas || two > kSharedBytesForTwoCtas;
  return keepsTwoCtas && three <= kMaxSharedBytes ? 3 : 2;
}

int forwardMinCtasPerSm(const KernelSpec &s) {
  // The CTAs that fill the register file at 128 registers a thread, where the
  // shared memory fits them (an SM's 228 KB, 1 KB a CTA reserved).
  KernelSpec filled = s;
  filled.tile = defaultTileConfig(s);
  const int threads = filled.tile.warps * 32;
  if (forwardWarpSpecialised(s)) // one CTA an SM by design
    return 0;
  if (threads <= 0 || kRegistersPerSm % (128 * threads) != 0)
    return 0;
  const int ctas = kRegistersPerSm / (128 * threads);
  const int bytes = forwardUsesWarpgroupMma(filled) ? warpgroupForwardBytes(filled.tile, s, forwardStages(s))
                                                    : sharedMemoryBytes(filled);
  return ctas >= 2 && ctas * (bytes + kReservedBytesPerCta) <= kSharedBytesPerSm ? ctas : 0;
}

namespace {

// The dK/dV kernel's shared memory with `buffers` step buffers: the CTA's K and
// V rows, per buffer a step's Q and dO rows and their scalars, the split sum's
// 8 bytes, the warps' totals and the selected branch's token list. Tiles in
// swizzled panels on sm_90a, padded rows on sm_80.
int dkdvSharedBytes(const KernelSpec &s, const TileConfig &t, int buffers) {
  const int pad = s.arch == Arch::SM90a ? 0 : 8;
  const int k = (s.headDimQK + pad) * 2, v = (s.headDimV + pad) * 2, rows = t.tokensPerCta * s.group;
  const int list = s.branch == Branch::Selected ? 2048 * t.warps : 0;
  return t.kvChunk * (k + v) + buffers * (rows * (k + v + 16) + t.tokensPerCta * 4) + 8 + 32 + list;
}

} // namespace

int dkdvStepBuffers(const KernelSpec &s) {
  KernelSpec filled = s;
  filled.tile = defaultTileConfig(s);
  // Three only for the window branch: H100, T = 64k, dK/dV ms, two buffers
  // against three (s16run8): window Dk = 192 7.82 -> 7.62, Dk = 128 5.78 ->
  // 5.52; but compressed [paper] 23.8 -> 25.0, selected [paper] random / local
  // 18.0 / 16.1 -> 18.2 / 16.4 (compressed l = d = 64, Dk = 128, 5.16 -> 4.98;
  // selected Dk = 128 13.4 / 11.9 -> 13.2 / 12.0).
  if (s.pass != KernelPass::BackwardDKDV || s.branch != Branch::Window || !backwardUsesWarpgroupMma(filled))
    return 2;
  // The CTAs an SM its registers allow (up to 255 a thread) must keep fitting.
  const int ctas = std::max(1, kRegistersPerSm / (256 * filled.tile.warps * 32));
  return ctas * (dkdvSharedBytes(s, filled.tile, 3) + kReservedBytesPerCta) <= kSharedBytesPerSm ? 3 : 2;
}

int sharedMemoryBytes(const KernelSpec &s) {
  TileConfig t = defaultTileConfig(s);
  const int kRow = (s.headDimQK + 8) * 2; // the mma.sync forward's padded Q rows
  switch (s.pass) {
  case KernelPass::Forward: {
    KernelSpec filled = s;
    filled.tile = t;
    if (forwardWarpSpecialised(filled))
      return specialisedForwardBytes(s, t);
    if (forwardUsesWarpgroupMma(filled)) // unpadded panels, a ring of K/V chunks
      return warpgroupForwardBytes(t, s, forwardStages(s));
    // Padded Q rows (ldmatrix), K/V chunks in swizzled panels.
    int bytes = t.warps * 16 * kRow + forwardStages(s) * t.kvChunk * (s.headDimQK + s.headDimV) * 2;
    if (s.branch == Branch::Selected && t.tokensPerCta > 1)
      bytes += selectedUnionSharedBytes(t.tokensPerCta, s.slcCount);
    return bytes;
  }
  case KernelPass::BackwardDQ: {
    // The selected per-token schedule keeps one K/V buffer; its union schedule adds its block lists.
    // Tiles in swizzled panels on sm_90a, padded rows on sm_80.
    const bool perToken = s.branch == Branch::Selected && t.tokensPerCta == 1;
    const int pad = s.arch == Arch::SM90a ? 0 : 8, rowBytes = (s.headDimQK + s.headDimV + 2 * pad) * 2;
    int bytes = t.warps * 16 * rowBytes + (perToken ? 1 : 2) * t.kvChunk * rowBytes;
    if (s.branch == Branch::Selected && !perToken)
      bytes += selectedUnionSharedBytes(t.tokensPerCta, s.slcCount);
    KernelSpec filled = s;
    filled.tile = t;
    if (selectedDqWarpgroupTile(filled) && t.warps * 32 == 128) // its union's bitmap build (one warpgroup)
      bytes += kUnionBitmapBytes;
    return bytes;
  }
  case KernelPass::BackwardDKDV:
    return dkdvSharedBytes(s, t, dkdvStepBuffers(s));
  case KernelPass::BackwardPreprocess:
    return 0;
  case KernelPass::Compress:
  case KernelPass::CompressBackward:
    return 0;
  case KernelPass::Combine:
    return 0;
  case KernelPass::CompressWeightGrad:
    return 4 * t.warps;
  case KernelPass::TopN: {
    return topNSharedBytes(s, t);
  }
  }
  return 0;
}

} // namespace nsajit
