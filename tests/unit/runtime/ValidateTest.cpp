// Argument checking without a GPU: every rejection names the argument and what
// is allowed; valid requests produce the kernel parameter block and launch
// dimensions of KernelAbi.h.
#include "KernelCache.h"
#include "Validate.h"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

using namespace nsajit;
using namespace nsajit::rt;

namespace {

struct Outcome {
  nsajit_status status = NSAJIT_OK;
  std::string message;
};

Outcome outcome(const std::function<void()> &f) {
  try {
    f();
    return {};
  } catch (const Error &e) {
    return {e.status(), e.what()};
  }
}

#define EXPECT_REJECTED(expr, st, ...)                                                                               \
  do {                                                                                                               \
    Outcome o_ = outcome([&] { (void)(expr); });                                                                     \
    EXPECT_EQ(o_.status, st) << o_.message;                                                                          \
    for (const char *part : {__VA_ARGS__})                                                                           \
      EXPECT_NE(o_.message.find(part), std::string::npos) << "message '" << o_.message << "' lacks '" << part << "'"; \
  } while (0)

// A valid request with contiguous tensors at distinct 256-byte aligned addresses.
struct Request {
  nsajit_config cfg = defaultConfig();
  int B = 2, T = 100;
  nsajit_tensor q{}, k{}, v{}, idx{}, out{}, lse{};
  Branch branch;

  explicit Request(Branch b, int batch = 2, int seqLen = 100) : B(batch), T(seqLen), branch(b) { layout(); }

  void layout() {
    const std::int64_t H = cfg.num_kv_heads, HQ = H * cfg.group, Dk = cfg.head_dim_qk, Dv = cfg.head_dim_v;
    const std::int64_t Tkv =
        branch == Branch::Compressed ? compressedLength(T, cfg.cmp_block, cfg.cmp_stride) : T;
    // 1 TiB apart: no two tensors overlap, even at B = 65535.
    q = {0x10000000, T * HQ * Dk, HQ * Dk, Dk};
    k = {std::uint64_t(1) << 40, Tkv * H * Dk, H * Dk, Dk};
    v = {std::uint64_t(2) << 40, Tkv * H * Dv, H * Dv, Dv};
    idx = {std::uint64_t(3) << 40, T * H * cfg.slc_count, H * cfg.slc_count, cfg.slc_count};
    out = {std::uint64_t(4) << 40, T * HQ * Dv, HQ * Dv, Dv};
    lse = {std::uint64_t(5) << 40, T * HQ, HQ, 1};
  }
  ForwardRequest request() const {
    ForwardRequest r;
    r.branch = branch;
    r.config = &cfg;
    r.batch = B;
    r.seqLen = T;
    r.q = &q;
    r.k = &k;
    r.v = &v;
    r.indices = branch == Branch::Selected ? &idx : nullptr;
    r.out = &out;
    r.lse = &lse;
    return r;
  }
  PreparedLaunch prepare(Arch arch = Arch::SM90a) const { return prepareForward(request(), arch); }
};

} // namespace

TEST(Validate, SelectedLaunchMatchesTheKernelAbi) {
  Request r(Branch::Selected, 3, 1000);
  PreparedLaunch p = r.prepare();
  KernelSpec expect = withDefaultTiles(specFromConfig(&r.cfg, Branch::Selected, Arch::SM90a));
  EXPECT_EQ(p.spec, expect);
  EXPECT_EQ(p.spec.arch, Arch::SM90a);
  EXPECT_EQ(p.spec.tile.tokensPerCta, 2); // the union schedule over 32 rows of G = 16
  EXPECT_EQ(p.grid[0], 500u);             // ceil(T / 2)
  EXPECT_EQ(p.grid[1], 4u);    // H
  EXPECT_EQ(p.grid[2], 3u);    // B
  EXPECT_EQ(p.threads, static_cast<unsigned>(threadsPerCta(p.spec)));
  EXPECT_EQ(p.sharedBytes, static_cast<unsigned>(sharedMemoryBytes(p.spec)));
  const ForwardKernelArgs &a = p.args;
  EXPECT_EQ(a.q, r.q.data);
  EXPECT_EQ(a.k, r.k.data);
  EXPECT_EQ(a.v, r.v.data);
  EXPECT_EQ(a.idx, r.idx.data);
  EXPECT_EQ(a.o, r.out.data);
  EXPECT_EQ(a.lse, r.lse.data);
  EXPECT_EQ(a.qs.batch, r.q.stride_batch);
  EXPECT_EQ(a.qs.token, r.q.stride_token);
  EXPECT_EQ(a.qs.head, r.q.stride_head);
  EXPECT_EQ(a.idxs.token, r.idx.stride_token);
  EXPECT_EQ(a.os.head, r.out.stride_head);
  EXPECT_EQ(a.lses.token, r.lse.stride_token);
  EXPECT_EQ(a.seqLen, 1000);
  EXPECT_EQ(a.kvLen, 1000);
  // Six spans: q, k, v, indices, out, lse with their byte extents.
  ASSERT_EQ(p.spans.count, 6);
  EXPECT_STREQ(p.spans[3].name, "indices");
  EXPECT_EQ(p.spans[0].bytes, std::uint64_t(3) * 1000 * 64 * 128 * 2);
  EXPECT_EQ(p.spans[5].bytes, std::uint64_t(3) * 1000 * 64 * 4);
}

TEST(Validate, CompressedUsesTcKeysAndTileTokens) {
  Request r(Branch::Compressed, 1, 1000);
  PreparedLaunch p = r.prepare();
  int Tc = (1000 - 32) / 16 + 1;
  EXPECT_EQ(p.args.kvLen, Tc);
  EXPECT_EQ(p.args.seqLen, 1000);
  EXPECT_EQ(p.args.idx, 0u);
  EXPECT_EQ(p.args.idxs.batch, 0);
  // A CTA walks forwardTilesPerCta tiles of tokensPerCta tokens.
  int tokens = p.spec.tile.tokensPerCta * forwardTilesPerCta(p.spec);
  ASSERT_GE(tokens, 1);
  EXPECT_EQ(p.grid[0], static_cast<unsigned>((1000 + tokens - 1) / tokens));
  EXPECT_EQ(p.spans.count, 5);
  EXPECT_STREQ(p.spans[1].name, "k_cmp");
  EXPECT_EQ(p.spans[1].bytes, std::uint64_t(Tc) * 4 * 128 * 2);
}

TEST(Validate, CompressedWithNoCompleteBlockStillLaunches) {
  // T < l: Tc = 0, the kernel writes zeros and -inf; k_cmp/v_cmp may be NULL.
  Request r(Branch::Compressed, 1, 20);
  r.k.data = 0;
  r.v.data = 0;
  PreparedLaunch p = r.prepare();
  EXPECT_EQ(p.args.kvLen, 0);
  EXPECT_EQ(p.args.k, 0u);
  EXPECT_EQ(p.spans[1].bytes, 0u);
  EXPECT_GE(p.grid[0], 1u);
}

TEST(Validate, CompressedLength) {
  EXPECT_EQ(compressedLength(31, 32, 16), 0);
  EXPECT_EQ(compressedLength(32, 32, 16), 1);
  EXPECT_EQ(compressedLength(47, 32, 16), 1);
  EXPECT_EQ(compressedLength(48, 32, 16), 2);
  EXPECT_EQ(compressedLength(65536, 32, 16), (65536 - 32) / 16 + 1);
  EXPECT_EQ(compressedLength(128, 64, 64), 2);
}

TEST(Validate, WindowLaunch) {
  Request r(Branch::Window, 2, 777);
  r.cfg.window = 100;
  PreparedLaunch p = r.prepare(Arch::SM80);
  EXPECT_EQ(p.spec.arch, Arch::SM80);
  EXPECT_EQ(p.spec.window, 100);
  EXPECT_EQ(p.args.kvLen, 777);
  EXPECT_EQ(p.spec.kernelName(), "nsa_window_fwd");
}

TEST(Validate, KernelParamsPointAtTheFieldsInAbiOrder) {
  ForwardKernelArgs a;
  a.q = 1, a.k = 2, a.v = 3, a.idx = 4, a.o = 5, a.lse = 6, a.tokenDone = 7;
  std::int64_t s = 100;
  for (TensorStrides3 *t : {&a.qs, &a.ks, &a.vs, &a.idxs, &a.os, &a.lses}) {
    t->batch = s++;
    t->token = s++;
    t->head = s++;
  }
  a.seqLen = 7777;
  a.kvLen = 8888;
  auto params = kernelParams(a);
  ASSERT_EQ(params.size(), 27u);
  for (int i = 0; i < 7; ++i)
    EXPECT_EQ(*static_cast<std::uint64_t *>(params[i]), std::uint64_t(i + 1));
  for (int i = 0; i < 18; ++i)
    EXPECT_EQ(*static_cast<std::int64_t *>(params[7 + i]), 100 + i) << "stride parameter " << i;
  EXPECT_EQ(*static_cast<std::int32_t *>(params[25]), 7777);
  EXPECT_EQ(*static_cast<std::int32_t *>(params[26]), 8888);
}

TEST(Validate, ConfigErrors) {
  Request r(Branch::Selected);
  ForwardRequest req = r.request();
  req.config = nullptr;
  EXPECT_REJECTED(prepareForward(req, Arch::SM90a), NSAJIT_ERROR_INVALID_ARGUMENT, "config is NULL",
                  "nsajit_config_init");

  r.cfg.struct_size = 0;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "struct_size = 0", "nsajit_config_init");
  r.cfg = defaultConfig();

  r.cfg.dtype = 7;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "dtype = 7", "NSAJIT_DTYPE_BF16", "NSAJIT_DTYPE_FP16");
  r.cfg = defaultConfig();

  r.cfg.num_kv_heads = 0;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "num_kv_heads (H) = 0", "1..65535");
  r.cfg.num_kv_heads = 70000;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "num_kv_heads (H) = 70000");
  r.cfg = defaultConfig();

  // validate()'s messages pass through.
  r.cfg.head_dim_qk = 100;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "head_dim_qk (Dk) = 100", "allowed: 64, 128, 192, 256");
  r.cfg = defaultConfig();
  r.cfg.head_dim_v = 256;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "head_dim_v (Dv) = 256 must not exceed");
  r.cfg = defaultConfig();
  r.cfg.group = 3;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "group (G) = 3");
  r.cfg = defaultConfig();
  r.cfg.slc_block = 48;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "selection block l' = 48");
  r.cfg.scale = -1.0f;
  r.cfg.slc_block = 64;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "scale");
  r.cfg = defaultConfig();
  r.cfg.tile_kv_chunk = 48;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "kv_chunk = 48");
  r.cfg = defaultConfig();
  r.cfg.tile_tokens = 17; // the selected union schedule takes 1..16 tokens per CTA
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "union schedule takes 1..16 tokens");
}

TEST(Validate, FieldsOfOtherBranchesAreIgnored) {
  Request w(Branch::Window);
  w.cfg.slc_block = 48;  // selected-only field
  w.cfg.cmp_stride = 7;  // compressed-only field
  EXPECT_NO_THROW(w.prepare());
  Request c(Branch::Compressed);
  c.cfg.cmp_stride = 7;  // 32 % 7 != 0
  c.layout();
  EXPECT_REJECTED(c.prepare(), NSAJIT_ERROR_UNSUPPORTED, "compressed stride d = 7");
}

TEST(Validate, ConfigStructSizeEvolution) {
  Request r(Branch::Selected);
  // An older caller without the tile fields: accepted with default tiles.
  r.cfg.struct_size = offsetof(nsajit_config, tile_warps);
  r.cfg.tile_kv_chunk = 48; // beyond its struct_size: must not be read
  EXPECT_NO_THROW(r.prepare());

  // A newer caller: extra zero bytes are fine, extra non-zero bytes are not understood.
  struct Newer {
    nsajit_config base;
    std::int32_t future[4];
  } newer{};
  newer.base = defaultConfig();
  newer.base.struct_size = sizeof(Newer);
  EXPECT_NO_THROW(specFromConfig(&newer.base, Branch::Selected, Arch::SM90a));
  newer.future[2] = 5;
  EXPECT_REJECTED(specFromConfig(&newer.base, Branch::Selected, Arch::SM90a), NSAJIT_ERROR_UNSUPPORTED,
                  "does not know", "struct_size");
}

TEST(Validate, BatchAndSequenceLength) {
  for (int b : {0, -1, 65536}) {
    Request r(Branch::Window, 1, 10);
    r.B = b;
    EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "batch", "1..65535");
  }
  for (int t : {0, -5}) {
    Request r(Branch::Window, 1, 10);
    r.T = t;
    EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "seq_len", "1..2147483647");
  }
  Request big(Branch::Window, 1, 10);
  big.B = 65535;
  EXPECT_NO_THROW(big.prepare()); // the limit itself is fine (the views are only checked, never touched)
}

TEST(Validate, NullTensorsAreNamed) {
  for (Branch b : {Branch::Compressed, Branch::Selected, Branch::Window}) {
    const bool cmp = b == Branch::Compressed;
    // The views themselves NULL.
    for (int which = 0; which < 6; ++which) {
      if (which == 3 && b != Branch::Selected)
        continue;
      Request r(b);
      ForwardRequest req = r.request();
      const char *name = nullptr;
      switch (which) {
      case 0: req.q = nullptr, name = "q is NULL"; break;
      case 1: req.k = nullptr, name = cmp ? "k_cmp is NULL" : "k is NULL"; break;
      case 2: req.v = nullptr, name = cmp ? "v_cmp is NULL" : "v is NULL"; break;
      case 3: req.indices = nullptr, name = "indices is NULL"; break;
      case 4: req.out = nullptr, name = "out is NULL"; break;
      case 5: req.lse = nullptr, name = "lse is NULL"; break;
      }
      EXPECT_REJECTED(prepareForward(req, Arch::SM90a), NSAJIT_ERROR_INVALID_ARGUMENT, name);
    }
  }
  Request r(Branch::Selected);
  r.out.data = 0;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "out.data is NULL");
  r = Request(Branch::Selected);
  r.idx.data = 0;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "indices.data is NULL");
}

TEST(Validate, Alignment) {
  Request r(Branch::Selected);
  r.q.data += 2;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "q.data = 0x10000002", "16-byte aligned");
  r = Request(Branch::Selected);
  r.v.data += 8;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "v.data", "16-byte aligned");
  r = Request(Branch::Selected);
  r.lse.data += 2;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "lse.data", "4-byte aligned");
  r = Request(Branch::Selected);
  r.idx.data += 4; // int32 indices need only 4 bytes
  EXPECT_NO_THROW(r.prepare());
  r.idx.data += 1;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "indices.data", "4-byte aligned");
}

TEST(Validate, Strides) {
  Request r(Branch::Selected);
  r.q.stride_head = 100;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "q.stride_head = 100", "multiple of 8 elements",
                  "16 bytes");
  r = Request(Branch::Selected);
  r.k.stride_token = -512;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "k.stride_token = -512", ">= 0");
  r = Request(Branch::Selected);
  r.out.stride_token = 0;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "out.stride_token = 0", "> 0");
  r = Request(Branch::Selected);
  r.lse.stride_head = 2;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "lse.stride_head = 2", "contiguous (stride 1)");
  r = Request(Branch::Selected);
  r.out.stride_head = 64; // Dv = 128: heads overlap
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "out strides", "overlap");
  r = Request(Branch::Selected);
  r.lse.stride_token = 10; // HQ = 64 floats per token
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "lse strides", "overlap");
  r = Request(Branch::Selected);
  r.q.stride_batch = std::int64_t(1) << 61;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "q [B, T, HQ, Dk]", "2^62 bytes");
  r = Request(Branch::Selected);
  r.idx.stride_token = 3; // int32 strides need no multiple of 8...
  r.idx.stride_head = 1;  // ...and inputs may overlap
  EXPECT_NO_THROW(r.prepare());
}

TEST(Validate, AcceptedLayouts) {
  // Broadcast inputs over the batch (stride 0).
  Request r(Branch::Selected);
  r.k.stride_batch = 0;
  r.v.stride_batch = 0;
  EXPECT_NO_THROW(r.prepare());
  // Outputs in [B, HQ, T, D] memory order (a permuted view).
  r = Request(Branch::Window, 2, 50);
  const std::int64_t HQ = 64, Dv = 128;
  r.out = {r.out.data, HQ * 50 * Dv, Dv, 50 * Dv};
  r.lse = {r.lse.data, HQ * 50, 1, 1};
  // lse [B, HQ, T] would need stride_head = T: the head dim must be contiguous.
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "lse strides", "overlap");
  r.lse = {r.lse.data, 50 * HQ, HQ, 1};
  EXPECT_NO_THROW(r.prepare());
  // Padded rows (stride larger than the dim, multiple of 8).
  r = Request(Branch::Window);
  r.q.stride_head = 136;
  r.q.stride_token = 64 * 136;
  r.q.stride_batch = 100 * 64 * 136 + 8;
  EXPECT_NO_THROW(r.prepare());
  // Dimensions of size 1 ignore their stride.
  r = Request(Branch::Window, 1, 10);
  r.q.stride_batch = 3;
  r.out.stride_batch = 0;
  EXPECT_NO_THROW(r.prepare());
}

TEST(Validate, BranchAndArchValues) {
  EXPECT_EQ(branchFromC(NSAJIT_BRANCH_WINDOW), Branch::Window);
  EXPECT_REJECTED(branchFromC(5), NSAJIT_ERROR_INVALID_ARGUMENT, "branch = 5", "NSAJIT_BRANCH_SELECTED");
  EXPECT_EQ(archFromInt(80), Arch::SM80);
  EXPECT_EQ(archFromInt(90), Arch::SM90a);
  EXPECT_REJECTED(archFromInt(75), NSAJIT_ERROR_INVALID_ARGUMENT, "arch = 75", "80 (sm_80)", "90 (sm_90a)");
}

TEST(KernelCacheKeys, ArchChoice) {
  DeviceInfo d;
  d.name = "Test GPU";
  d.ccMajor = 9, d.ccMinor = 0;
  EXPECT_EQ(chooseArch(d), Arch::SM90a);
  d.ccMajor = 8, d.ccMinor = 0;
  EXPECT_EQ(chooseArch(d), Arch::SM80);
  d.ccMinor = 6;
  EXPECT_EQ(chooseArch(d), Arch::SM80);
  d.ccMajor = 10, d.ccMinor = 0;
  EXPECT_EQ(chooseArch(d), Arch::SM80);
  d.ccMajor = 12;
  EXPECT_EQ(chooseArch(d), Arch::SM80);
  d.ccMajor = 7, d.ccMinor = 5;
  EXPECT_REJECTED(chooseArch(d), NSAJIT_ERROR_UNSUPPORTED, "'Test GPU'", "7.5", "sm_80", "sm_90a");
}

TEST(KernelCacheKeys, KeyHasSpecGpuAndCompiler) {
  nsajit_config cfg = defaultConfig();
  KernelSpec s = specFromConfig(&cfg, Branch::Selected, Arch::SM90a);
  DeviceInfo h100{0, "NVIDIA H100 80GB HBM3", 9, 0};
  DeviceInfo h200{0, "NVIDIA H200", 9, 0};
  std::string k1 = cacheKey(s, deviceTag(h100));
  EXPECT_NE(k1.find(s.str()), std::string::npos);
  EXPECT_NE(k1.find("NVIDIA H100 80GB HBM3 cc9.0"), std::string::npos);
  EXPECT_NE(k1.find(compilerVersionString()), std::string::npos);
  EXPECT_NE(k1, cacheKey(s, deviceTag(h200)));
  KernelSpec s80 = specFromConfig(&cfg, Branch::Selected, Arch::SM80);
  EXPECT_NE(k1, cacheKey(s80, deviceTag(h100)));
  // Tile defaults are filled in before keying: explicit defaults give the same key.
  nsajit_config explicitTiles = cfg;
  explicitTiles.tile_warps = s.tile.warps;
  explicitTiles.tile_tokens = s.tile.tokensPerCta;
  explicitTiles.tile_kv_chunk = s.tile.kvChunk;
  EXPECT_EQ(k1, cacheKey(specFromConfig(&explicitTiles, Branch::Selected, Arch::SM90a), deviceTag(h100)));
}

TEST(Validate, OutputsMustNotOverlapInputsOrEachOther) {
  Request r(Branch::Window);
  r.out.data = r.q.data; // in place over q: other CTAs still read it
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "out [B, T, HQ, Dv]", "q [B, T, HQ, Dk]",
                  "share memory", "must not overlap the input q");
  r = Request(Branch::Window);
  r.lse.data = r.out.data + 64; // inside out
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "out", "lse", "must not overlap the output");
  r = Request(Branch::Selected);
  r.lse.data = r.idx.data + 4 * 100; // lse overlaps the indices
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "lse", "the input indices");
  // Inputs may share memory: k and v are one tensor here.
  r = Request(Branch::Window);
  r.v = r.k;
  EXPECT_NO_THROW(r.prepare());
  // Right behind each other is fine.
  r = Request(Branch::Window, 1, 10);
  r.lse.data = r.out.data + std::uint64_t(10) * 64 * 128 * 2;
  EXPECT_NO_THROW(r.prepare());
  r.lse.data -= 4;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "share memory");
}

TEST(Validate, InterleavedViewsAreDisjoint) {
  auto span = [](std::uint64_t data, std::int64_t inner, std::vector<std::pair<std::int64_t, std::int64_t>> dims) {
    TensorSpan s;
    s.name = "t";
    s.data = data;
    s.innerBytes = inner;
    std::int64_t reach = inner;
    for (auto [extent, stride] : dims) {
      s.dims[static_cast<std::size_t>(s.numDims++)] = {extent, stride};
      reach += (extent - 1) * stride;
    }
    s.bytes = static_cast<std::uint64_t>(reach);
    return s;
  };
  // One packed gradient [B=2, T=10, HQ + 2H = 6, D = 64] bf16 (rows of 128 bytes): dq (4 heads), dk, dv (1 each).
  const std::int64_t D = 128, token = 6 * D, batch = 10 * token;
  const std::uint64_t base = 0x10000 + 32; // not aligned to a token
  TensorSpan dq = span(base, D, {{2, batch}, {10, token}, {4, D}});
  TensorSpan dk = span(base + 4 * D, D, {{2, batch}, {10, token}});
  TensorSpan dv = span(base + 5 * D, D, {{2, batch}, {10, token}});
  EXPECT_TRUE(disjoint(dq, dk));
  EXPECT_TRUE(disjoint(dk, dq));
  EXPECT_TRUE(disjoint(dk, dv));
  EXPECT_TRUE(disjoint(dq, dv));
  // One head too many: dq's fifth head is dk.
  TensorSpan dq5 = span(base, D, {{2, batch}, {10, token}, {5, D}});
  EXPECT_FALSE(disjoint(dq5, dk));
  // Shifted by one element into dq's slot.
  TensorSpan dkShifted = span(base + 4 * D - 2, D, {{2, batch}, {10, token}});
  EXPECT_FALSE(disjoint(dq, dkShifted));
  // Identical and nested views overlap; empty ones never do.
  EXPECT_FALSE(disjoint(dq, dq));
  EXPECT_FALSE(disjoint(span(base, 16, {}), span(base + 8, 16, {})));
  EXPECT_TRUE(disjoint(span(base, 16, {}), span(base + 16, 16, {})));
  TensorSpan empty = span(base, 16, {});
  empty.bytes = 0;
  EXPECT_TRUE(disjoint(empty, dq));
  // Broadcast (stride 0) dims stay in their slot.
  TensorSpan bcast = span(base + 4 * D, D, {{2, 0}, {10, token}});
  EXPECT_TRUE(disjoint(dq, bcast));
}
