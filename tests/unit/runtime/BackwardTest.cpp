// The backward of each branch (nsajit_*_backward): the argument checks without
// a GPU (every argument named in its error), the launch plan (three kernels,
// their grids and the BackwardKernelArgs block of KernelAbi.h), and the three
// launches against the fake driver. Also nsajit_compile2, nsajit_compile_ptx2
// and nsajit_kernel_query2 for the backward kernels.
#include "Backward.h"
#include "Combine.h"
#include "TestUtil.h"

#include "nsajit/nsajit.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

using namespace nsajit;
using namespace nsajit::rt;
using namespace nsajit::rt::test;

namespace {

bool contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

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
    for (const std::string &part : std::initializer_list<std::string>{__VA_ARGS__})                                                                         \
      EXPECT_TRUE(contains(o_.message, part)) << "message '" << o_.message << "' lacks '" << part << "'";           \
  } while (0)

#define EXPECT_ERROR_WITH(call, st, ...)                                                                             \
  do {                                                                                                               \
    nsajit_status s_ = (call);                                                                                       \
    std::string m_ = nsajit_last_error();                                                                            \
    EXPECT_EQ(s_, st) << nsajit_status_string(s_) << ": " << m_;                                                     \
    for (const std::string &part : std::initializer_list<std::string>{__VA_ARGS__})                                                                         \
      EXPECT_TRUE(contains(m_, part)) << "message '" << m_ << "' lacks '" << part << "'";                           \
  } while (0)

const Branch kBranches[] = {Branch::Compressed, Branch::Selected, Branch::Window};
const KernelPass kBwdPasses[] = {KernelPass::BackwardPreprocess, KernelPass::BackwardDQ, KernelPass::BackwardDKDV};

// The arguments of one backward call, in C argument order.
enum Arg { Q, K, V, IDX, O, LSE, DOUT, GATE, DELTA, DQ, DK, DV, DGATE, kNumArgs };
enum class Kind { Half, Row, Indices };
struct ArgInfo {
  const char *name;    // for the selected and window branches
  const char *cmpName; // for the compressed branch
  Kind kind;
  bool output;
};
const ArgInfo kArgs[kNumArgs] = {
    {"q", "q", Kind::Half, false},         {"k", "k_cmp", Kind::Half, false},     {"v", "v_cmp", Kind::Half, false},
    {"indices", "indices", Kind::Indices, false}, {"o", "o", Kind::Half, false},  {"lse", "lse", Kind::Row, false},
    {"dout", "dout", Kind::Half, false},   {"gate", "gate", Kind::Row, false},    {"delta", "delta", Kind::Row, true},
    {"dq", "dq", Kind::Half, true},        {"dk", "dk", Kind::Half, true},        {"dv", "dv", Kind::Half, true},
    {"dgate", "dgate", Kind::Row, true},
};

const char *argName(Branch b, int a) { return b == Branch::Compressed ? kArgs[a].cmpName : kArgs[a].name; }
bool argUsed(Branch b, int a, bool gated) {
  if (a == IDX)
    return b == Branch::Selected;
  if (a == GATE || a == DGATE)
    return gated;
  return true;
}

// Shape of every argument: {N (tokens), heads, dim, element bytes}.
struct Extents {
  std::int64_t N, heads, dim, elemBytes;
};
Extents extentsOf(const nsajit_config &c, Branch branch, int T, int a) {
  const std::int64_t H = c.num_kv_heads, HQ = H * c.group, Dk = c.head_dim_qk, Dv = c.head_dim_v;
  const std::int64_t Tkv = branch == Branch::Compressed ? compressedLength(T, c.cmp_block, c.cmp_stride) : T;
  switch (a) {
  case Q: case DQ: return {T, HQ, Dk, 2};
  case K: case DK: return {Tkv, H, Dk, 2};
  case V: case DV: return {Tkv, H, Dv, 2};
  case IDX: return {T, H, c.slc_count, 4};
  case O: case DOUT: return {T, HQ, Dv, 2};
  default: return {T, HQ, 1, 4}; // lse, gate, delta, dgate: [B, T, HQ] float32
  }
}

// Contiguous views of every argument; `base(a)` gives their addresses.
void contiguousViews(const nsajit_config &c, Branch branch, int T, const std::function<std::uint64_t(int)> &base,
                     nsajit_tensor (&t)[kNumArgs]) {
  for (int a = 0; a < kNumArgs; ++a) {
    Extents e = extentsOf(c, branch, T, a);
    if (kArgs[a].kind == Kind::Row)
      t[a] = {base(a), e.N * e.heads, e.heads, 1};
    else
      t[a] = {base(a), e.N * e.heads * e.dim, e.heads * e.dim, e.dim};
  }
}

BackwardRequest makeRequest(Branch branch, const nsajit_config *cfg, int B, int T, const nsajit_tensor (&t)[kNumArgs],
                            bool gated) {
  BackwardRequest r;
  r.branch = branch;
  r.config = cfg;
  r.batch = B;
  r.seqLen = T;
  r.q = &t[Q];
  r.k = &t[K];
  r.v = &t[V];
  r.indices = branch == Branch::Selected ? &t[IDX] : nullptr;
  r.o = &t[O];
  r.lse = &t[LSE];
  r.dout = &t[DOUT];
  r.gate = gated ? &t[GATE] : nullptr;
  r.delta = &t[DELTA];
  r.dq = &t[DQ];
  r.dk = &t[DK];
  r.dv = &t[DV];
  r.dgate = gated ? &t[DGATE] : nullptr;
  return r;
}

// A valid request without a GPU: tensors 1 TiB apart (nothing is touched).
struct Request {
  nsajit_config cfg = defaultConfig();
  Branch branch;
  int B, T;
  bool gated = true;
  nsajit_tensor t[kNumArgs]{};

  explicit Request(Branch b, int batch = 2, int seqLen = 100) : branch(b), B(batch), T(seqLen) { layout(); }
  void layout() {
    contiguousViews(cfg, branch, T, [](int a) { return (std::uint64_t(a) + 1) << 40; }, t);
  }
  BackwardRequest request() const { return makeRequest(branch, &cfg, B, T, t, gated); }
  PreparedBackward prepare(Arch arch = Arch::SM90a) const { return prepareBackward(request(), arch); }
};

unsigned ceilDiv(std::int64_t a, std::int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

} // namespace

// ---- the launch plan, without a GPU ---------------------------------------------

TEST(BackwardValidate, ThreeKernelsWithTheirGrids) {
  for (Branch b : kBranches) {
    SCOPED_TRACE(branchName(b));
    Request r(b, 3, 1000);
    PreparedBackward p = r.prepare(Arch::SM80);
    ASSERT_EQ(p.numKernels, 3);
    const std::int64_t Tkv = b == Branch::Compressed ? (1000 - 32) / 16 + 1 : 1000;
    for (int i = 0; i < 3; ++i) {
      const LaunchDims &d = p.kernels[static_cast<std::size_t>(i)];
      EXPECT_EQ(d.spec, specFromConfig(&r.cfg, b, Arch::SM80, kBwdPasses[i]));
      EXPECT_EQ(d.spec.pass, kBwdPasses[i]);
      EXPECT_EQ(d.spec.arch, Arch::SM80);
      EXPECT_EQ(d.spec.kernelName(), std::string("nsa_") + branchName(b) + "_" + passName(kBwdPasses[i]));
      const unsigned gridX = kBwdPasses[i] == KernelPass::BackwardDKDV ? ceilDiv(Tkv, d.spec.tile.kvChunk)
                                                                       : ceilDiv(1000, d.spec.tile.tokensPerCta);
      EXPECT_EQ(d.grid[0], gridX) << passName(kBwdPasses[i]);
      EXPECT_EQ(d.grid[1], 4u); // H
      EXPECT_EQ(d.grid[2], 3u); // B
      EXPECT_EQ(d.threads, static_cast<unsigned>(threadsPerCta(d.spec)));
      EXPECT_EQ(d.sharedBytes, static_cast<unsigned>(sharedMemoryBytes(d.spec)));
    }
    EXPECT_EQ(p.args.seqLen, 1000);
    EXPECT_EQ(p.args.kvLen, Tkv);
    EXPECT_EQ(p.spans.count, b == Branch::Selected ? 13 : 12);
  }
}

TEST(BackwardValidate, ParameterBlockFollowsTheArguments) {
  Request r(Branch::Selected);
  r.t[K].stride_batch = 0; // a broadcast input keeps its stride
  r.t[DQ].stride_head = 136;
  r.t[DQ].stride_token = 64 * 136;
  r.t[DQ].stride_batch = 100 * 64 * 136;
  PreparedBackward p = r.prepare();
  const BackwardKernelArgs &a = p.args;
  const std::uint64_t ptrs[13] = {a.q, a.k, a.v, a.idx, a.o, a.lse, a.dout, a.gate, a.delta, a.dq, a.dk, a.dv, a.dgate};
  const TensorStrides3 strides[13] = {a.qs,    a.ks,     a.vs,  a.idxs, a.os,  a.lses,  a.douts,
                                      a.gates, a.deltas, a.dqs, a.dks,  a.dvs, a.dgates};
  for (int i = 0; i < kNumArgs; ++i) {
    SCOPED_TRACE(kArgs[i].name);
    EXPECT_EQ(ptrs[i], r.t[i].data);
    EXPECT_EQ(strides[i].batch, r.t[i].stride_batch);
    EXPECT_EQ(strides[i].token, r.t[i].stride_token);
    EXPECT_EQ(strides[i].head, r.t[i].stride_head);
  }
  EXPECT_EQ(a.seqLen, 100);
  EXPECT_EQ(a.kvLen, 100);
}

TEST(BackwardValidate, UnusedPointersAndStridesAreZero) {
  Request r(Branch::Window);
  r.gated = false;
  PreparedBackward p = r.prepare();
  const BackwardKernelArgs &a = p.args;
  EXPECT_EQ(a.idx, 0u);
  EXPECT_EQ(a.gate, 0u);
  EXPECT_EQ(a.dgate, 0u);
  for (const TensorStrides3 &s : {a.idxs, a.gates, a.dgates}) {
    EXPECT_EQ(s.batch, 0);
    EXPECT_EQ(s.token, 0);
    EXPECT_EQ(s.head, 0);
  }
  EXPECT_EQ(a.delta, r.t[DELTA].data);
  EXPECT_EQ(p.spans.count, 10);
  // The compressed branch has no indices either, even if the caller had some.
  Request c(Branch::Compressed);
  EXPECT_EQ(c.prepare().args.idx, 0u);
}

TEST(BackwardValidate, KernelParamsPointAtTheFieldsInAbiOrder) {
  BackwardKernelArgs a;
  std::uint64_t *ptrs[13] = {&a.q, &a.k, &a.v, &a.idx, &a.o, &a.lse, &a.dout, &a.gate, &a.delta,
                             &a.dq, &a.dk, &a.dv, &a.dgate};
  for (int i = 0; i < 13; ++i)
    *ptrs[i] = std::uint64_t(i + 1);
  std::int64_t s = 100;
  for (TensorStrides3 *t : {&a.qs, &a.ks, &a.vs, &a.idxs, &a.os, &a.lses, &a.douts, &a.gates, &a.deltas, &a.dqs,
                            &a.dks, &a.dvs, &a.dgates}) {
    t->batch = s++;
    t->token = s++;
    t->head = s++;
  }
  a.seqLen = 7777;
  a.kvLen = 8888;
  a.workspace = 4242;
  a.tokenDone = 4343;
  a.selectionMapWords = 99;
  auto params = kernelParams(a);
  ASSERT_EQ(params.size(), 57u);
  for (int i = 0; i < 13; ++i)
    EXPECT_EQ(*static_cast<std::uint64_t *>(params[i]), std::uint64_t(i + 1)) << "pointer parameter " << i;
  EXPECT_EQ(*static_cast<std::uint64_t *>(params[13]), 4242u); // the dK/dV workspace
  EXPECT_EQ(*static_cast<std::uint64_t *>(params[14]), 4343u); // the dQ schedule's hand-over
  for (int i = 0; i < 39; ++i)
    EXPECT_EQ(*static_cast<std::int64_t *>(params[15 + i]), 100 + i) << "stride parameter " << i;
  EXPECT_EQ(*static_cast<std::int32_t *>(params[54]), 7777);
  EXPECT_EQ(*static_cast<std::int32_t *>(params[55]), 8888);
  EXPECT_EQ(*static_cast<std::int32_t *>(params[56]), 99);
}

TEST(BackwardValidate, DkdvSplitsBoundTheLongestTokenWalk) {
  nsajit_config c{};
  nsajit_config_init(&c);
  auto spec = [&](Branch b) { return specFromConfig(&c, b, Arch::SM90a, KernelPass::BackwardDKDV); };
  // Automatic: 1024 tokens a CTA for the compressed branch (segment-major, no growth), 2048 for
  // the window, at most 64 CTAs.
  EXPECT_EQ(dkdvSplits(spec(Branch::Compressed), 65536, 0), kMaxDkdvSplits);
  EXPECT_EQ(dkdvSplits(spec(Branch::Compressed), 4096, 0), 4); // (4096 - 31) / 1024 rounded up
  EXPECT_EQ(dkdvSplits(spec(Branch::Compressed), 20, 0), 1);   // no compressed key at all
  EXPECT_EQ(dkdvSplits(spec(Branch::Compressed), 1 << 20, 0), kMaxDkdvSplits);
  // The unsplit CTAs do not shorten the compressed split (most of its CTAs find no work).
  EXPECT_EQ(dkdvSplits(spec(Branch::Compressed), 65536, 0, 256), kMaxDkdvSplits);
  EXPECT_EQ(dkdvSplits(spec(Branch::Compressed), 65536, 0, 100000), kMaxDkdvSplits);
  EXPECT_EQ(dkdvSplits(spec(Branch::Compressed), 4096, 0, 4), 4);
  EXPECT_EQ(dkdvSplits(spec(Branch::Compressed), 65536, 8192, 100000), 8); // explicit lengths stay
  // Given the unsplit CTAs, the window's split stops near 2048 CTAs (segments of 2048 to 8192
  // tokens): a window of 16384 is seen by 128 + 16383 tokens a chunk.
  c.window = 16384;
  EXPECT_EQ(dkdvSplits(spec(Branch::Window), 65536, 0), 9);
  EXPECT_EQ(dkdvSplits(spec(Branch::Window), 65536, 0, 4), 9);
  EXPECT_EQ(dkdvSplits(spec(Branch::Window), 65536, 0, 512), 4);    // 2048 / 512 CTAs
  EXPECT_EQ(dkdvSplits(spec(Branch::Window), 65536, 0, 100000), 3); // never beyond 8192 tokens
  c.window = 512;
  // The selected branch, given the launch's CTAs (1024 chunks of 64 keys a KV head at
  // T = 64k): about B H T n / (2 x SMs) tokens a split, rounded, at least 4096 tokens.
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 65536, 0, 1024 * 4, 132), 4);  // 264 / 64 = 4.1
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 32768, 0, 512 * 4, 132), 4);   // not T-dependent
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 65536, 0, 1024 * 4), 4);       // 132 SMs by default
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 65536, 0, 1024 * 4, 108), 3);  // 216 / 64 = 3.4
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 65536, 0, 1024 * 1, 132), 16); // one KV head: 16.5
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 8192, 0, 128 * 4, 132), 2);    // segments >= 4096 tokens
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 65536, 0, 1024 * 32, 132), 1); // many heads: no split
  // Without the launch's CTAs: 16384 tokens a split.
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 65536, 0), 4);
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 65537, 0), 5);
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 16384, 0), 1);
  EXPECT_EQ(dkdvSplits(spec(Branch::Window), 65536, 0), 1); // a window key is seen by kvChunk + w - 1 tokens
  // Explicit lengths.
  EXPECT_EQ(dkdvSplits(spec(Branch::Window), 65536, 100), 7); // (128 + 511) / 100 rounded up: 128 keys a CTA
  EXPECT_EQ(dkdvSplits(spec(Branch::Selected), 1000, 1), kMaxDkdvSplits);
  EXPECT_REJECTED(dkdvSplits(spec(Branch::Selected), 1000, -5), NSAJIT_ERROR_INVALID_ARGUMENT, "-5",
                  "0 (automatic)");
}

TEST(BackwardValidate, CompressedUsesTcKeys) {
  Request r(Branch::Compressed, 1, 1000);
  const int Tc = (1000 - 32) / 16 + 1;
  PreparedBackward p = r.prepare();
  EXPECT_EQ(p.args.kvLen, Tc);
  EXPECT_STREQ(p.spans[1].name, "k_cmp");
  EXPECT_EQ(p.spans[1].bytes, std::uint64_t(Tc) * 4 * 128 * 2);
  BackwardRequest req = r.request();
  req.dk = nullptr;
  EXPECT_REJECTED(prepareBackward(req, Arch::SM90a), NSAJIT_ERROR_INVALID_ARGUMENT, "dk is NULL", "[B, Tc, H, Dk]");
  r.t[DK].stride_token = 8;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "dk strides", "overlap");
}

TEST(BackwardValidate, CompressedWithoutCompleteBlocksSkipsTheKeyKernel) {
  Request r(Branch::Compressed, 1, 20); // T < l = 32: Tc = 0
  for (int a : {K, V, DK, DV})
    r.t[a].data = 0; // nothing to read or write
  PreparedBackward p = r.prepare();
  EXPECT_EQ(p.numKernels, 2);
  EXPECT_EQ(p.args.kvLen, 0);
  EXPECT_EQ(p.args.dk, 0u);
  EXPECT_EQ(p.kernels[0].spec.pass, KernelPass::BackwardPreprocess);
  EXPECT_EQ(p.kernels[1].spec.pass, KernelPass::BackwardDQ);
  EXPECT_GE(p.kernels[1].grid[0], 1u); // dq is still written (zeros)
  EXPECT_EQ(p.kernels[2].grid[0], 0u);
}

// ---- argument errors ---------------------------------------------------------------

TEST(BackwardValidate, NullViewsAreNamed) {
  for (Branch b : kBranches)
    for (int a = 0; a < kNumArgs; ++a) {
      if (!argUsed(b, a, true) || a == GATE || a == DGATE)
        continue; // the gate pair has its own rule
      Request r(b);
      BackwardRequest req = r.request();
      const nsajit_tensor **field[kNumArgs] = {&req.q,   &req.k,    &req.v,     &req.indices, &req.o,
                                               &req.lse, &req.dout, &req.gate,  &req.delta,   &req.dq,
                                               &req.dk,  &req.dv,   &req.dgate};
      *field[a] = nullptr;
      EXPECT_REJECTED(prepareBackward(req, Arch::SM90a), NSAJIT_ERROR_INVALID_ARGUMENT,
                      std::string(argName(b, a)) + " is NULL");
    }
}

TEST(BackwardValidate, GateAndDgateComeTogether) {
  for (Branch b : kBranches) {
    Request r(b);
    BackwardRequest req = r.request();
    req.dgate = nullptr;
    EXPECT_REJECTED(prepareBackward(req, Arch::SM90a), NSAJIT_ERROR_INVALID_ARGUMENT,
                    "dgate is NULL but gate is given", "gate = NULL");
    req = r.request();
    req.gate = nullptr;
    EXPECT_REJECTED(prepareBackward(req, Arch::SM90a), NSAJIT_ERROR_INVALID_ARGUMENT,
                    "dgate is given but gate is NULL", "pass dgate = NULL");
    req.dgate = nullptr;
    EXPECT_NO_THROW(prepareBackward(req, Arch::SM90a));
  }
}

TEST(BackwardValidate, DataAlignmentAndStridesOfEveryArgument) {
  for (Branch b : kBranches)
    for (int a = 0; a < kNumArgs; ++a) {
      if (!argUsed(b, a, true))
        continue;
      const std::string name = argName(b, a);
      SCOPED_TRACE(std::string(branchName(b)) + " " + name);
      const ArgInfo &info = kArgs[a];
      Request r(b);
      r.t[a].data = 0;
      EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, name + ".data is NULL");

      r = Request(b);
      r.t[a].data += 2;
      EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, name + ".data = 0x",
                      info.kind == Kind::Half ? "16-byte aligned" : "4-byte aligned");

      if (info.kind == Kind::Half) {
        r = Request(b);
        r.t[a].stride_head += 4;
        EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, name + ".stride_head = ", "multiple of 8");
      }
      if (info.kind == Kind::Row) {
        r = Request(b);
        r.t[a].stride_head = 2;
        EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, name + ".stride_head = 2",
                        "contiguous (stride 1)");
      }
      r = Request(b);
      r.t[a].stride_token = -8;
      EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, name + ".stride_token = -8", ">= 0");

      r = Request(b);
      r.t[a].stride_token = 0;
      if (info.output) {
        EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, name + ".stride_token = 0", "> 0");
        // An output's elements must not alias each other.
        r = Request(b);
        r.t[a].stride_token = r.t[a].stride_token / 2 / 8 * 8;
        EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, name + " strides", "alias itself");
      } else {
        EXPECT_NO_THROW(r.prepare()) << "an input may broadcast over tokens";
      }
    }
}

TEST(BackwardValidate, OutputsMustNotOverlapEachOtherOrInputs) {
  for (Branch b : kBranches)
    for (int out = 0; out < kNumArgs; ++out) {
      if (!kArgs[out].output || !argUsed(b, out, true))
        continue;
      for (int other = 0; other < kNumArgs; ++other) {
        if (other == out || !argUsed(b, other, true))
          continue;
        SCOPED_TRACE(std::string(branchName(b)) + " " + argName(b, out) + " over " + argName(b, other));
        Request r(b);
        r.t[out].data = r.t[other].data + 16; // partly over the other tensor
        const std::string first = out < other || !kArgs[other].output ? argName(b, out) : argName(b, other);
        const std::string second = first == argName(b, out) ? argName(b, other) : argName(b, out);
        EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "share memory",
                        "the output " + first + " must not overlap", second);
      }
    }
  // Inputs may share memory (k and v one tensor; o and dout too, for what it is worth).
  Request r(Branch::Window);
  r.t[V] = r.t[K];
  r.t[DOUT] = r.t[O];
  EXPECT_NO_THROW(r.prepare());
}

TEST(BackwardValidate, PackedGradientsAreAccepted) {
  // dq, dk, dv as views of one [B, T, HQ + 2H, D] gradient (Dk = Dv = 128).
  Request r(Branch::Window, 2, 50);
  const std::int64_t HQ = 64, H = 4, D = 128, row = (HQ + 2 * H) * D;
  const std::uint64_t base = std::uint64_t(20) << 40;
  r.t[DQ] = {base, 50 * row, row, D};
  r.t[DK] = {base + HQ * D * 2, 50 * row, row, D};
  r.t[DV] = {base + (HQ + H) * D * 2, 50 * row, row, D};
  EXPECT_NO_THROW(r.prepare());
  r.t[DV].data -= 16; // one element into dk's slot
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "dk", "dv", "share memory");
}

TEST(BackwardValidate, ConfigBatchAndLength) {
  Request r(Branch::Selected);
  BackwardRequest req = r.request();
  req.config = nullptr;
  EXPECT_REJECTED(prepareBackward(req, Arch::SM90a), NSAJIT_ERROR_INVALID_ARGUMENT, "config is NULL");
  r.cfg.group = 5;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "group (G) = 5", "allowed: 1, 2, 4, 8, 16, 32");
  r.cfg = defaultConfig();
  r.cfg.head_dim_v = 256;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "head_dim_v (Dv) = 256 must not exceed");
  r.cfg = defaultConfig();
  r.cfg.dtype = 3;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_UNSUPPORTED, "dtype = 3");
  r.cfg = defaultConfig();
  r.B = 0;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "batch = 0", "1..65535");
  r.B = 2;
  r.T = -1;
  EXPECT_REJECTED(r.prepare(), NSAJIT_ERROR_INVALID_ARGUMENT, "seq_len = -1");
}

TEST(BackwardValidate, TileOverridesApplyToTheForwardAndTheSelectedSchedule) {
  Request r(Branch::Selected);
  r.cfg.tile_tokens = 2;     // the schedule: the selected dQ kernel follows it
  r.cfg.tile_kv_chunk = 128; // larger than l' = 64
  PreparedBackward p = r.prepare();
  nsajit_config plain = defaultConfig();
  for (int i = 0; i < 3; ++i) {
    plain.tile_tokens = kBwdPasses[i] == KernelPass::BackwardDQ ? 2 : 0;
    EXPECT_EQ(p.kernels[static_cast<std::size_t>(i)].spec,
              specFromConfig(&plain, Branch::Selected, Arch::SM90a, kBwdPasses[i]));
  }
  EXPECT_EQ(p.kernels[1].spec.tile.tokensPerCta, 2);
  EXPECT_EQ(p.kernels[1].spec.tile.kvChunk, 32); // its own chunk
  r.cfg.tile_tokens = 1;                         // per token
  EXPECT_EQ(r.prepare().kernels[1].spec.tile.tokensPerCta, 1);
  r.cfg.tile_tokens = 2;
  EXPECT_REJECTED(specFromConfig(&r.cfg, Branch::Selected, Arch::SM90a), NSAJIT_ERROR_UNSUPPORTED, "kv_chunk");
}

TEST(BackwardValidate, PassValues) {
  EXPECT_EQ(passFromC(NSAJIT_PASS_FORWARD), KernelPass::Forward);
  EXPECT_EQ(passFromC(NSAJIT_PASS_BACKWARD_PRE), KernelPass::BackwardPreprocess);
  EXPECT_EQ(passFromC(NSAJIT_PASS_BACKWARD_DQ), KernelPass::BackwardDQ);
  EXPECT_EQ(passFromC(NSAJIT_PASS_BACKWARD_DKDV), KernelPass::BackwardDKDV);
  EXPECT_EQ(passFromC(NSAJIT_PASS_TOPN), KernelPass::TopN);
  EXPECT_REJECTED(passFromC(9), NSAJIT_ERROR_INVALID_ARGUMENT, "pass = 9", "NSAJIT_PASS_COMBINE (8)");
  EXPECT_REJECTED(passFromC(-1), NSAJIT_ERROR_INVALID_ARGUMENT, "pass = -1");
}

// ---- against the fake driver -----------------------------------------------------

namespace {

// Device tensors of the fake driver for one backward call.
struct DeviceTensors {
  std::vector<std::unique_ptr<FakeBuffer>> buffers;
  nsajit_tensor t[kNumArgs]{};
  DeviceTensors(const nsajit_config &c, Branch branch, int B, int T) {
    for (int a = 0; a < kNumArgs; ++a) {
      Extents e = extentsOf(c, branch, T, a);
      buffers.push_back(
          std::make_unique<FakeBuffer>(std::max<std::int64_t>(1, B * e.N * e.heads * e.dim) * e.elemBytes));
    }
    contiguousViews(c, branch, T, [&](int a) { return buffers[static_cast<std::size_t>(a)]->ptr(); }, t);
  }
};

class FakeGpuBackward : public ::testing::Test {
protected:
  TempDir cacheDir;
  RecordingCompiler compiler;
  FakeDriver &fake = FakeDriver::get();
  nsajit_config cfg{};
  std::vector<nsajit_context *> contexts;

  void SetUp() override {
    fake.fakecuda_reset();
    CudaDriver::resetForTesting(NSAJIT_FAKE_CUDA_PATH);
    DiskCache::setGlobalForTesting(std::make_shared<DiskCache>(cacheDir.path()));
    PtxCache::global().resetForTesting(compiler.fn());
    nsajit_config_init(&cfg);
  }
  void TearDown() override {
    for (nsajit_context *c : contexts)
      nsajit_context_destroy(c);
    PtxCache::global().resetForTesting(nullptr);
    DiskCache::setGlobalForTesting(std::make_shared<DiskCache>("", "unit tests"));
    CudaDriver::resetForTesting("");
  }
  nsajit_context *create() {
    nsajit_context *ctx = nullptr;
    EXPECT_EQ(nsajit_context_create(&ctx, 0), NSAJIT_OK) << nsajit_last_error();
    if (ctx)
      contexts.push_back(ctx);
    return ctx;
  }
  nsajit_cache_counters stats(nsajit_context *ctx) {
    nsajit_cache_counters s{};
    s.struct_size = sizeof s;
    EXPECT_EQ(nsajit_cache_stats(ctx, &s), NSAJIT_OK);
    return s;
  }
  // The C entry point of `branch`; gate/dgate NULL when !gated.
  nsajit_status backward(nsajit_context *ctx, Branch branch, int B, int T, const nsajit_tensor (&t)[kNumArgs],
                         bool gated, void *stream = nullptr, const nsajit_config *config = nullptr) {
    const nsajit_config *c = config ? config : &cfg;
    const nsajit_tensor *gate = gated ? &t[GATE] : nullptr, *dgate = gated ? &t[DGATE] : nullptr;
    switch (branch) {
    case Branch::Compressed:
      return nsajit_compressed_backward(ctx, c, B, T, &t[Q], &t[K], &t[V], &t[O], &t[LSE], &t[DOUT], gate, &t[DELTA],
                                        &t[DQ], &t[DK], &t[DV], dgate, stream);
    case Branch::Selected:
      return nsajit_selected_backward(ctx, c, B, T, &t[Q], &t[K], &t[V], &t[IDX], &t[O], &t[LSE], &t[DOUT], gate,
                                      &t[DELTA], &t[DQ], &t[DK], &t[DV], dgate, stream);
    case Branch::Window:
      return nsajit_window_backward(ctx, c, B, T, &t[Q], &t[K], &t[V], &t[O], &t[LSE], &t[DOUT], gate, &t[DELTA],
                                    &t[DQ], &t[DK], &t[DV], dgate, stream);
    }
    return NSAJIT_ERROR_INTERNAL;
  }
  // The exact parameter block a launch must carry: 13 pointers, the workspace
  // (0 unless the dK/dV walk is split or the selected branch has a selection
  // map), tokenDone (0: the dQ two-kernel schedule is off in these tests),
  // 39 strides, T, Tkv, the map's row words (selected: ceil(T / 32)).
  void expectParameterBlock(const FakeCudaLaunch &l, Branch branch, const nsajit_tensor (&t)[kNumArgs], bool gated,
                            int T, int Tkv, bool workspace = false) {
    ASSERT_EQ(l.num_u64, 54);
    ASSERT_EQ(l.num_i32, 3);
    for (int a = 0; a < kNumArgs; ++a) {
      SCOPED_TRACE(kArgs[a].name);
      const bool used = argUsed(branch, a, gated);
      EXPECT_EQ(l.u64[a], used ? t[a].data : 0u);
      EXPECT_EQ(static_cast<std::int64_t>(l.u64[15 + 3 * a]), used ? t[a].stride_batch : 0);
      EXPECT_EQ(static_cast<std::int64_t>(l.u64[16 + 3 * a]), used ? t[a].stride_token : 0);
      EXPECT_EQ(static_cast<std::int64_t>(l.u64[17 + 3 * a]), used ? t[a].stride_head : 0);
    }
    const bool map = branch == Branch::Selected; // the default limit holds these small maps
    EXPECT_EQ(l.u64[13] != 0, workspace || map);
    EXPECT_EQ(l.u64[14], 0u);
    EXPECT_EQ(l.i32[0], T);
    EXPECT_EQ(l.i32[1], Tkv);
    EXPECT_EQ(l.i32[2], map ? (T + 31) / 32 : 0);
  }
  CUcontext primaryContext() {
    CUcontext c = nullptr;
    fake.primaryRetain(&c, 0);
    fake.primaryRelease(0);
    return c;
  }
};

} // namespace

TEST_F(FakeGpuBackward, SelectedLaunchesThreeKernelsInOrderWithTheKernelAbi) {
  nsajit_context *ctx = create();
  const int B = 2, T = 300;
  DeviceTensors d(cfg, Branch::Selected, B, T);
  void *stream = reinterpret_cast<void *>(0x5151);
  ASSERT_EQ(backward(ctx, Branch::Selected, B, T, d.t, true, stream), NSAJIT_OK) << nsajit_last_error();
  EXPECT_STREQ(nsajit_last_error(), "");

  std::vector<FakeCudaLaunch> launches = fake.launches();
  ASSERT_EQ(launches.size(), 3u);
  const char *names[3] = {"nsa_selected_bwd_pre", "nsa_selected_bwd_dq", "nsa_selected_bwd_dkdv"};
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(names[i]);
    const FakeCudaLaunch &l = launches[static_cast<std::size_t>(i)];
    KernelSpec spec = specFromConfig(&cfg, Branch::Selected, Arch::SM90a, kBwdPasses[i]);
    EXPECT_EQ(l.count, i + 1);
    EXPECT_STREQ(l.kernel_name, names[i]);
    EXPECT_EQ(l.context, primaryContext());
    EXPECT_EQ(l.stream, stream);
    const unsigned gridX =
        i == 2 ? ceilDiv(T, spec.tile.kvChunk) : ceilDiv(T, spec.tile.tokensPerCta);
    EXPECT_EQ(l.grid[0], gridX);
    EXPECT_EQ(l.grid[1], 4u);
    EXPECT_EQ(l.grid[2], unsigned(B));
    EXPECT_EQ(l.block[0], unsigned(threadsPerCta(spec)));
    EXPECT_EQ(l.block[1], 1u);
    EXPECT_EQ(l.block[2], 1u);
    EXPECT_EQ(l.shared, unsigned(sharedMemoryBytes(spec)));
    expectParameterBlock(l, Branch::Selected, d.t, true, T, T);
  }
  // One kernel per pass, compiled for this GPU.
  EXPECT_EQ(compiler.calls, 3);
  EXPECT_EQ(compiler.lastSpec, specFromConfig(&cfg, Branch::Selected, Arch::SM90a, KernelPass::BackwardDKDV));
  CUcontext current = reinterpret_cast<CUcontext>(0x1);
  fake.ctxGetCurrent(&current);
  EXPECT_EQ(current, nullptr); // the caller's (empty) current context is restored
}

TEST_F(FakeGpuBackward, SelectedDqRunsTwoKernelsOnHopper) {
  // The dQ kernels' two-kernel schedule: the wgmma union kernel before bwd_dq,
  // both handed the same tokenDone bytes after the rest of the workspace (the
  // other tests turn the schedule off; the context reads the switch when it is created).
  ::setenv("NSAJIT_SELECTED_TWO_KERNEL", "1", 1);
  nsajit_context *ctx = create();
  ::setenv("NSAJIT_SELECTED_TWO_KERNEL", "0", 1);
  const int B = 2, T = 300;
  DeviceTensors d(cfg, Branch::Selected, B, T);
  ASSERT_EQ(backward(ctx, Branch::Selected, B, T, d.t, true), NSAJIT_OK) << nsajit_last_error();
  std::vector<FakeCudaLaunch> all = fake.launches();
  ASSERT_EQ(all.size(), 4u);
  const KernelSpec dq = specFromConfig(&cfg, Branch::Selected, Arch::SM90a, KernelPass::BackwardDQ);
  KernelSpec first = dq;
  first.tile = selectedDqUnionTile(dq);
  ASSERT_EQ(first.tile.warps, 4);
  EXPECT_EQ(first.tile.tokensPerCta, 64 / cfg.group);
  EXPECT_EQ(first.tile.kvChunk, cfg.head_dim_qk > 128 ? 32 : 64); // the dQ default's chunk
  EXPECT_TRUE(backwardUsesWarpgroupMma(first));
  EXPECT_FALSE(backwardUsesWarpgroupMma(dq)); // the default 2-token tile: mma.sync
  const char *names[4] = {"nsa_selected_bwd_pre", "nsa_selected_bwd_dq", "nsa_selected_bwd_dq",
                          "nsa_selected_bwd_dkdv"};
  for (int i = 0; i < 4; ++i)
    EXPECT_STREQ(all[static_cast<std::size_t>(i)].kernel_name, names[i]);
  EXPECT_EQ(all[1].grid[0], ceilDiv(T, first.tile.tokensPerCta));
  EXPECT_EQ(all[1].block[0], unsigned(threadsPerCta(first)));
  EXPECT_EQ(all[1].shared, unsigned(sharedMemoryBytes(first)));
  EXPECT_EQ(all[2].grid[0], ceilDiv(T, dq.tile.tokensPerCta));
  EXPECT_EQ(all[2].shared, unsigned(sharedMemoryBytes(dq)));
  const std::uint64_t ws = all[0].u64[13], done = all[1].u64[14];
  EXPECT_NE(ws, 0u);
  EXPECT_GT(done, ws); // after the selection map
  EXPECT_EQ(done % 256, 0u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(all[static_cast<std::size_t>(i)].u64[13], ws);
    EXPECT_EQ(all[static_cast<std::size_t>(i)].u64[14], done); // one parameter block for all
  }
  EXPECT_EQ(compiler.calls, 4);

  // A config's tile (its tokens, which the dQ kernel follows) runs bwd_dq alone.
  cfg.tile_tokens = 2;
  ASSERT_EQ(backward(ctx, Branch::Selected, B, T, d.t, true), NSAJIT_OK) << nsajit_last_error();
  ASSERT_EQ(fake.launches().size(), 7u);
  EXPECT_EQ(fake.lastLaunch().u64[14], 0u);
  // So do the sm_80 kernels.
  cfg.tile_tokens = 0;
  ASSERT_EQ(nsajit_context_set_arch(ctx, 80), NSAJIT_OK) << nsajit_last_error();
  ASSERT_EQ(backward(ctx, Branch::Selected, B, T, d.t, true), NSAJIT_OK) << nsajit_last_error();
  ASSERT_EQ(fake.launches().size(), 10u);
  EXPECT_EQ(fake.lastLaunch().u64[14], 0u);
}

TEST_F(FakeGpuBackward, CompressedAndWindowWithoutGates) {
  nsajit_context *ctx = create();
  const int B = 1, T = 1000, Tc = (1000 - 32) / 16 + 1;
  cfg.window = 128;
  for (Branch b : {Branch::Compressed, Branch::Window}) {
    SCOPED_TRACE(branchName(b));
    fake.fakecuda_reset();
    DeviceTensors d(cfg, b, B, T);
    ASSERT_EQ(backward(ctx, b, B, T, d.t, false), NSAJIT_OK) << nsajit_last_error();
    std::vector<FakeCudaLaunch> launches = fake.launches();
    ASSERT_EQ(launches.size(), 3u);
    const int Tkv = b == Branch::Compressed ? Tc : T;
    for (int i = 0; i < 3; ++i) {
      const FakeCudaLaunch &l = launches[static_cast<std::size_t>(i)];
      KernelSpec spec = specFromConfig(&cfg, b, Arch::SM90a, kBwdPasses[i]);
      EXPECT_EQ(std::string(l.kernel_name), spec.kernelName());
      EXPECT_EQ(l.grid[0], i == 2 ? ceilDiv(Tkv, spec.tile.kvChunk) : ceilDiv(T, spec.tile.tokensPerCta));
      EXPECT_EQ(l.shared, unsigned(sharedMemoryBytes(spec)));
      expectParameterBlock(l, b, d.t, false, T, Tkv);
    }
  }
  EXPECT_EQ(compiler.lastSpec.window, 128);
}

TEST_F(FakeGpuBackward, SplitWalksLaunchSplitsPerChunkWithAWorkspacePerStream) {
  nsajit_context *ctx = create();
  const int B = 2, T = 1000, Tc = (1000 - 32) / 16 + 1;
  ASSERT_EQ(nsajit_context_set_backward_split(ctx, 100), NSAJIT_OK);
  DeviceTensors d(cfg, Branch::Compressed, B, T);
  void *streamA = reinterpret_cast<void *>(0x5151), *streamB = reinterpret_cast<void *>(0x6161);
  ASSERT_EQ(backward(ctx, Branch::Compressed, B, T, d.t, true, streamA), NSAJIT_OK) << nsajit_last_error();
  KernelSpec spec = specFromConfig(&cfg, Branch::Compressed, Arch::SM90a, KernelPass::BackwardDKDV);
  const int chunks = ceilDiv(Tc, spec.tile.kvChunk), splits = ceilDiv(T - 31, 100);
  std::vector<FakeCudaLaunch> launches = fake.launches();
  ASSERT_EQ(launches.size(), 3u);
  // bwd_dkdv: the splits of each chunk side by side along x. The three kernels
  // share one parameter block, so all carry the workspace (only bwd_dkdv uses it).
  EXPECT_EQ(launches[2].grid[0], unsigned(chunks * splits));
  EXPECT_EQ(launches[1].grid[0], unsigned(ceilDiv(T, specFromConfig(&cfg, Branch::Compressed, Arch::SM90a,
                                                                   KernelPass::BackwardDQ).tile.tokensPerCta)));
  expectParameterBlock(launches[2], Branch::Compressed, d.t, true, T, Tc, /*workspace=*/true);
  const std::uint64_t wsA = launches[2].u64[13];
  // The workspace holds the tiles' state, zeroed before the launch, and the partial sums.
  const std::uint64_t stateBytes = dkdvWorkspaceStateBytes(B, 4, chunks);
  EXPECT_EQ(stateBytes, (std::uint64_t(B) * 4 * chunks * 16 + 255) / 256 * 256);
  EXPECT_GT(dkdvWorkspaceBytes(B, 4, chunks, spec.tile.kvChunk, 128, 128),
            stateBytes + std::uint64_t(B) * 4 * chunks * spec.tile.kvChunk * 256 * 4 - 1);
  // (The fake driver's device memory is host memory.)
  unsigned char *host = reinterpret_cast<unsigned char *>(wsA);
  EXPECT_EQ(std::count(host, host + stateBytes, 0), std::ptrdiff_t(stateBytes));
  std::memset(host, 0xAB, stateBytes); // as a kernel would leave it
  const int live = fake.fakecuda_live_allocations();

  // The same stream reuses it; another stream gets its own.
  ASSERT_EQ(backward(ctx, Branch::Compressed, B, T, d.t, true, streamA), NSAJIT_OK) << nsajit_last_error();
  ASSERT_EQ(backward(ctx, Branch::Compressed, B, T, d.t, true, streamB), NSAJIT_OK) << nsajit_last_error();
  launches = fake.launches();
  ASSERT_EQ(launches.size(), 9u);
  EXPECT_EQ(launches[5].u64[13], wsA);
  EXPECT_EQ(std::count(host, host + stateBytes, 0), std::ptrdiff_t(stateBytes)); // zeroed again
  EXPECT_NE(launches[8].u64[13], 0u);
  EXPECT_NE(launches[8].u64[13], wsA);
  EXPECT_EQ(fake.fakecuda_live_allocations(), live + 1);

  // Back to automatic: 969 tokens fit one CTA, no workspace.
  ASSERT_EQ(nsajit_context_set_backward_split(ctx, 0), NSAJIT_OK);
  ASSERT_EQ(backward(ctx, Branch::Compressed, B, T, d.t, true, streamA), NSAJIT_OK) << nsajit_last_error();
  launches = fake.launches();
  ASSERT_EQ(launches.size(), 12u);
  EXPECT_EQ(launches[11].grid[0], unsigned(chunks));
  expectParameterBlock(launches[11], Branch::Compressed, d.t, true, T, Tc, /*workspace=*/false);

  EXPECT_EQ(nsajit_context_set_backward_split(ctx, -1), NSAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(nsajit_last_error()).find("0 (automatic)"), std::string::npos) << nsajit_last_error();
  EXPECT_EQ(nsajit_context_set_backward_split(nullptr, 10), NSAJIT_ERROR_INVALID_ARGUMENT);
  // The context frees its workspaces.
  nsajit_context_destroy(ctx);
  contexts.clear();
  EXPECT_EQ(fake.fakecuda_live_allocations(), live - 1);
}

// The backward's tuner against the fake driver, whose "timings" (mode 2) are the
// last launch's grid x in thousandths of a ms: the fewest dK/dV CTAs win, so the
// unsplit walk. It must be recorded, used by later launches of contexts without
// a split of their own, and ignored with NSAJIT_TUNING=off.
TEST_F(FakeGpuBackward, TuneBackwardRecordsTheFastestSplitAndLaunchesUseIt) {
  fake.fakecuda_set_elapsed_from_shared(2);
  nsajit_context *ctx = create();
  const int B = 1, T = 4096, Tc = (T - 32) / 16 + 1;
  const KernelSpec spec = specFromConfig(&cfg, Branch::Compressed, Arch::SM90a, KernelPass::BackwardDKDV);
  const int chunks = ceilDiv(Tc, spec.tile.kvChunk), autoSplits = dkdvSplits(spec, T, 0);
  ASSERT_GT(autoSplits, 1);
  std::vector<std::string> seen;
  auto onProgress = [](int done, int total, const char *what, double ms, void *user) {
    static_cast<std::vector<std::string> *>(user)->push_back(what);
    EXPECT_LE(done, total);
    EXPECT_GT(ms, 0.0);
  };
  nsajit_tune_backward_result r{};
  r.struct_size = sizeof r;
  ASSERT_EQ(nsajit_tune_backward(ctx, &cfg, NSAJIT_BRANCH_COMPRESSED, B, T, 3, onProgress, &seen, &r), NSAJIT_OK)
      << nsajit_last_error();
  EXPECT_EQ(r.split_tokens, T); // no split
  EXPECT_EQ(r.splits, 1);
  EXPECT_EQ(r.default_splits, autoSplits);
  EXPECT_NEAR(r.best_ms, chunks / 1000.0, 1e-6);
  EXPECT_NEAR(r.default_ms, chunks * autoSplits / 1000.0, 1e-6);
  EXPECT_EQ(r.failed, 0);
  // auto, then 256, 512, 2048 and 4096 (no split): 1024 splits as auto does.
  ASSERT_EQ(r.candidates, 5);
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen.front(), fmt::format("split auto ({} CTAs a key chunk)", autoSplits));
  EXPECT_EQ(seen.back(), fmt::format("split {} (1 CTAs a key chunk)", T));
  EXPECT_NE(std::string(r.database).find(cacheDir.path() + "/tuning/"), std::string::npos) << r.database;

  int32_t split = -1;
  int tuned = -1;
  ASSERT_EQ(nsajit_tuned_backward_split(ctx, &cfg, NSAJIT_BRANCH_COMPRESSED, B, T, &split, &tuned), NSAJIT_OK);
  EXPECT_EQ(tuned, 1);
  EXPECT_EQ(split, T);
  ASSERT_EQ(nsajit_tuned_backward_split(ctx, &cfg, NSAJIT_BRANCH_WINDOW, B, T, &split, &tuned), NSAJIT_OK);
  EXPECT_EQ(tuned, 0);
  EXPECT_EQ(split, 0);

  // Later launches walk unsplit; the context's own split takes precedence.
  DeviceTensors d(cfg, Branch::Compressed, B, T);
  ASSERT_EQ(backward(ctx, Branch::Compressed, B, T, d.t, true), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(fake.lastLaunch().grid[0], unsigned(chunks));
  ASSERT_EQ(nsajit_context_set_backward_split(ctx, 512), NSAJIT_OK);
  ASSERT_EQ(backward(ctx, Branch::Compressed, B, T, d.t, true), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(fake.lastLaunch().grid[0], unsigned(chunks * dkdvSplits(spec, T, 512)));
  // A new context reads the database; NSAJIT_TUNING=off ignores it.
  ASSERT_EQ(backward(create(), Branch::Compressed, B, T, d.t, true), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(fake.lastLaunch().grid[0], unsigned(chunks));
  {
    ScopedEnv off("NSAJIT_TUNING", "off");
    nsajit_context *ignoring = create();
    ASSERT_EQ(backward(ignoring, Branch::Compressed, B, T, d.t, true), NSAJIT_OK) << nsajit_last_error();
    EXPECT_EQ(fake.lastLaunch().grid[0], unsigned(chunks * autoSplits));
    ASSERT_EQ(nsajit_tuned_backward_split(ignoring, &cfg, NSAJIT_BRANCH_COMPRESSED, B, T, &split, &tuned), NSAJIT_OK);
    EXPECT_EQ(tuned, 0);
  }
}

TEST_F(FakeGpuBackward, CompressedWithoutCompleteBlocksLaunchesNoKeyKernel) {
  nsajit_context *ctx = create();
  const int T = 10; // < l = 32
  DeviceTensors d(cfg, Branch::Compressed, 1, T);
  for (int a : {K, V, DK, DV})
    d.t[a] = {0, 0, 0, 0};
  ASSERT_EQ(backward(ctx, Branch::Compressed, 1, T, d.t, true), NSAJIT_OK) << nsajit_last_error();
  std::vector<FakeCudaLaunch> launches = fake.launches();
  ASSERT_EQ(launches.size(), 2u);
  EXPECT_STREQ(launches[0].kernel_name, "nsa_compressed_bwd_pre");
  EXPECT_STREQ(launches[1].kernel_name, "nsa_compressed_bwd_dq");
  EXPECT_EQ(launches[1].i32[1], 0);
  EXPECT_EQ(compiler.calls, 2); // the dk/dv kernel is not even generated
}

TEST_F(FakeGpuBackward, EveryKernelIsLoadedBeforeTheFirstLaunch) {
  nsajit_context *ctx = create();
  DeviceTensors d(cfg, Branch::Window, 1, 64);
  int calls = 0;
  bool failDkdv = true;
  PtxCache::global().resetForTesting([&](const KernelSpec &spec, std::string &ptx) -> std::string {
    ++calls;
    if (failDkdv && spec.pass == KernelPass::BackwardDKDV)
      return "no dK/dV template yet";
    ptx = fakePtx(spec);
    return {};
  });
  EXPECT_ERROR_WITH(backward(ctx, Branch::Window, 1, 64, d.t, true), NSAJIT_ERROR_COMPILE_ERROR,
                    "no dK/dV template yet", "window bwd_dkdv bf16 sm_90a");
  EXPECT_EQ(fake.fakecuda_launch_count(), 0);
  failDkdv = false;
  ASSERT_EQ(backward(ctx, Branch::Window, 1, 64, d.t, true), NSAJIT_OK) << nsajit_last_error();
  EXPECT_EQ(fake.fakecuda_launch_count(), 3);
  EXPECT_EQ(calls, 4); // bwd_pre and bwd_dq were kept; only bwd_dkdv was generated again
}

TEST_F(FakeGpuBackward, KernelsAreCachedPerPass) {
  nsajit_context *ctx = create();
  DeviceTensors d(cfg, Branch::Selected, 1, 64);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(backward(ctx, Branch::Selected, 1, 64, d.t, i % 2 == 0), NSAJIT_OK) << nsajit_last_error();
  nsajit_cache_counters s = stats(ctx);
  EXPECT_EQ(s.compiles, 3u);
  EXPECT_EQ(s.modules_loaded, 3u);
  EXPECT_EQ(s.kernel_hits, 6u);
  EXPECT_EQ(fake.fakecuda_launch_count(), 9);
  // The forward is a fourth kernel.
  nsajit_tensor *t = d.t;
  ASSERT_EQ(nsajit_selected_forward(ctx, &cfg, 1, 64, &t[Q], &t[K], &t[V], &t[IDX], &t[O], &t[LSE], nullptr),
            NSAJIT_OK)
      << nsajit_last_error();
  EXPECT_EQ(stats(ctx).compiles, 4u);
  EXPECT_STREQ(fake.lastLaunch().kernel_name, "nsa_selected_fwd");
  EXPECT_EQ(fake.lastLaunch().num_u64, 25); // 7 pointers, 18 strides
}

TEST_F(FakeGpuBackward, InvalidArgumentsFailBeforeCompilingOrLaunching) {
  nsajit_context *ctx = create();
  DeviceTensors d(cfg, Branch::Window, 1, 64);
  d.t[DQ].data += 8;
  EXPECT_ERROR_WITH(backward(ctx, Branch::Window, 1, 64, d.t, true), NSAJIT_ERROR_INVALID_ARGUMENT, "dq.data",
                    "16-byte aligned");
  d.t[DQ].data -= 8;
  nsajit_tensor *t = d.t;
  EXPECT_ERROR_WITH(nsajit_window_backward(ctx, &cfg, 1, 64, &t[Q], &t[K], &t[V], &t[O], &t[LSE], &t[DOUT], &t[GATE],
                                           &t[DELTA], &t[DQ], &t[DK], &t[DV], nullptr, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "dgate is NULL but gate is given");
  EXPECT_ERROR_WITH(nsajit_window_backward(ctx, &cfg, 1, 64, &t[Q], &t[K], &t[V], &t[O], &t[LSE], &t[DOUT], nullptr,
                                           nullptr, &t[DQ], &t[DK], &t[DV], nullptr, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "delta is NULL");
  EXPECT_ERROR_WITH(nsajit_selected_backward(ctx, &cfg, 1, 64, &t[Q], &t[K], &t[V], nullptr, &t[O], &t[LSE],
                                             &t[DOUT], nullptr, &t[DELTA], &t[DQ], &t[DK], &t[DV], nullptr, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "indices is NULL");
  d.t[DK] = d.t[K]; // in place over k
  EXPECT_ERROR_WITH(backward(ctx, Branch::Window, 1, 64, d.t, true), NSAJIT_ERROR_INVALID_ARGUMENT, "dk", "k",
                    "share memory");
  nsajit_config bad = cfg;
  bad.group = 5;
  DeviceTensors d2(cfg, Branch::Window, 1, 64);
  EXPECT_ERROR_WITH(backward(ctx, Branch::Window, 1, 64, d2.t, true, nullptr, &bad), NSAJIT_ERROR_UNSUPPORTED,
                    "group (G) = 5");
  EXPECT_ERROR_WITH(backward(nullptr, Branch::Window, 1, 64, d2.t, true), NSAJIT_ERROR_INVALID_ARGUMENT,
                    "ctx is NULL");
  EXPECT_EQ(compiler.calls, 0);
  EXPECT_EQ(fake.fakecuda_launch_count(), 0);
}

TEST_F(FakeGpuBackward, PointersOutsideDeviceMemoryAreRejected) {
  nsajit_context *ctx = create();
  const int T = 64;
  DeviceTensors d(cfg, Branch::Window, 1, T);
  std::vector<std::uint64_t> host(1 << 20);
  const std::uint64_t hostPtr = (reinterpret_cast<std::uint64_t>(host.data()) + 255) & ~std::uint64_t(255);
  nsajit_tensor saved = d.t[DGATE];
  d.t[DGATE].data = hostPtr;
  EXPECT_ERROR_WITH(backward(ctx, Branch::Window, 1, T, d.t, true), NSAJIT_ERROR_INVALID_ARGUMENT, "dgate.data = 0x",
                    "not memory the CUDA driver knows");
  d.t[DGATE] = saved;
  EXPECT_EQ(backward(ctx, Branch::Window, 1, T, d.t, true), NSAJIT_OK) << nsajit_last_error();
  // A tensor larger than its allocation: all arguments in one allocation, dv
  // last and 256 bytes short (so it overlaps no other argument).
  std::vector<std::uint64_t> offsets(kNumArgs);
  std::uint64_t total = 0;
  for (int a = 0; a < kNumArgs; ++a) {
    int arg = a == kNumArgs - 1 ? DV : a == DV ? kNumArgs - 1 : a; // dv swaps places with the last (dgate)
    Extents e = extentsOf(cfg, Branch::Window, T, arg);
    offsets[static_cast<std::size_t>(arg)] = total;
    total += (static_cast<std::uint64_t>(e.N * e.heads * e.dim * e.elemBytes) + 255) / 256 * 256;
  }
  FakeBuffer arena(total - 256);
  nsajit_tensor t[kNumArgs];
  contiguousViews(cfg, Branch::Window, T, [&](int a) { return arena.ptr() + offsets[static_cast<std::size_t>(a)]; },
                  t);
  EXPECT_ERROR_WITH(backward(ctx, Branch::Window, 1, T, t, true), NSAJIT_ERROR_INVALID_ARGUMENT, "dv needs",
                    "allocation", "256 bytes earlier");
  EXPECT_EQ(fake.fakecuda_launch_count(), 3); // only the valid call above
}

TEST_F(FakeGpuBackward, LaunchFailuresNameTheKernel) {
  nsajit_context *ctx = create();
  DeviceTensors d(cfg, Branch::Window, 1, 64);
  fake.fakecuda_set_launch_result(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES);
  EXPECT_ERROR_WITH(backward(ctx, Branch::Window, 1, 64, d.t, true), NSAJIT_ERROR_DRIVER_ERROR,
                    "cuLaunchKernel(nsa_window_bwd_pre", "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES");
  fake.fakecuda_set_launch_result(0);
  EXPECT_EQ(backward(ctx, Branch::Window, 1, 64, d.t, true), NSAJIT_OK) << nsajit_last_error();
}

TEST_F(FakeGpuBackward, UnsupportedGpuReportsArgumentErrorsFirst) {
  fake.fakecuda_set_device(1, 7, 5, "Fake T4", 65536, 0);
  nsajit_context *ctx = create();
  DeviceTensors d(cfg, Branch::Window, 1, 64);
  EXPECT_ERROR_WITH(backward(ctx, Branch::Window, 0, 64, d.t, true), NSAJIT_ERROR_INVALID_ARGUMENT, "batch = 0");
  EXPECT_ERROR_WITH(backward(ctx, Branch::Window, 1, 64, d.t, true), NSAJIT_ERROR_UNSUPPORTED, "'Fake T4'", "7.5");
}

TEST_F(FakeGpuBackward, SharedMemoryIsOptedInPerKernel) {
  nsajit_context *ctx = create();
  cfg.head_dim_qk = 256;
  cfg.head_dim_v = 256;
  KernelSpec dq = specFromConfig(&cfg, Branch::Window, Arch::SM90a, KernelPass::BackwardDQ);
  KernelSpec dkdv = specFromConfig(&cfg, Branch::Window, Arch::SM90a, KernelPass::BackwardDKDV);
  ASSERT_GT(sharedMemoryBytes(dkdv), 48 * 1024);
  DeviceTensors d(cfg, Branch::Window, 1, 64);
  ASSERT_EQ(backward(ctx, Branch::Window, 1, 64, d.t, true), NSAJIT_OK) << nsajit_last_error();
  std::vector<FakeCudaLaunch> launches = fake.launches();
  ASSERT_EQ(launches.size(), 3u);
  EXPECT_EQ(launches[1].shared, unsigned(sharedMemoryBytes(dq)));
  EXPECT_EQ(launches[2].shared, unsigned(sharedMemoryBytes(dkdv)));
  EXPECT_EQ(launches[0].shared, unsigned(sharedMemoryBytes(
                                    specFromConfig(&cfg, Branch::Window, Arch::SM90a, KernelPass::BackwardPreprocess))));

  // A GPU (sm_86: the sm_80 kernels, whose tiles are padded rows) with less
  // shared memory than the largest backward kernel needs: UNSUPPORTED, and
  // nothing launched although the other kernels load.
  KernelSpec dq80 = specFromConfig(&cfg, Branch::Window, Arch::SM80, KernelPass::BackwardDQ);
  KernelSpec dkdv80 = specFromConfig(&cfg, Branch::Window, Arch::SM80, KernelPass::BackwardDKDV);
  KernelSpec largest = sharedMemoryBytes(dkdv80) >= sharedMemoryBytes(dq80) ? dkdv80 : dq80;
  fake.fakecuda_reset();
  fake.fakecuda_set_device(1, 8, 6, "Fake RTX A6000", sharedMemoryBytes(largest) - 16, 0);
  nsajit_context *small = create();
  EXPECT_ERROR_WITH(backward(small, Branch::Window, 1, 64, d.t, true), NSAJIT_ERROR_UNSUPPORTED,
                    "bytes of shared memory per CTA", "'Fake RTX A6000'",
                    std::string("window ") + passName(largest.pass) + " bf16 sm_80");
  EXPECT_EQ(fake.fakecuda_launch_count(), 0);
}

TEST_F(FakeGpuBackward, CompileAndQueryTheBackwardKernels) {
  nsajit_context *ctx = create();
  const nsajit_kernel_pass passes[3] = {NSAJIT_PASS_BACKWARD_PRE, NSAJIT_PASS_BACKWARD_DQ, NSAJIT_PASS_BACKWARD_DKDV};
  for (int i = 0; i < 3; ++i) {
    const char *ptx = nullptr;
    ASSERT_EQ(nsajit_compile2(ctx, &cfg, NSAJIT_BRANCH_WINDOW, passes[i], &ptx), NSAJIT_OK) << nsajit_last_error();
    KernelSpec spec = specFromConfig(&cfg, Branch::Window, Arch::SM90a, kBwdPasses[i]);
    EXPECT_EQ(std::string(ptx), fakePtx(spec));

    nsajit_kernel_info info{};
    info.struct_size = sizeof info;
    ASSERT_EQ(nsajit_kernel_query2(ctx, &cfg, NSAJIT_BRANCH_WINDOW, passes[i], 80 /* ignored */, &info), NSAJIT_OK)
        << nsajit_last_error();
    EXPECT_EQ(info.arch, 90);
    EXPECT_EQ(std::string(info.kernel_name), spec.kernelName());
    EXPECT_EQ(std::string(info.spec), spec.str());
    EXPECT_EQ(info.threads_per_cta, threadsPerCta(spec));
    EXPECT_EQ(info.shared_memory_bytes, sharedMemoryBytes(spec));
    EXPECT_EQ(info.num_regs, 128);
    EXPECT_EQ(info.local_bytes, 0);
  }
  EXPECT_EQ(compiler.calls, 3);
  // NSAJIT_PASS_FORWARD is nsajit_compile.
  const char *fwd = nullptr, *fwd2 = nullptr;
  ASSERT_EQ(nsajit_compile(ctx, &cfg, NSAJIT_BRANCH_WINDOW, &fwd), NSAJIT_OK);
  ASSERT_EQ(nsajit_compile2(ctx, &cfg, NSAJIT_BRANCH_WINDOW, NSAJIT_PASS_FORWARD, &fwd2), NSAJIT_OK);
  EXPECT_EQ(fwd, fwd2);
  EXPECT_ERROR_WITH(nsajit_compile2(ctx, &cfg, NSAJIT_BRANCH_WINDOW, static_cast<nsajit_kernel_pass>(9), &fwd),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "pass = 9");
  EXPECT_ERROR_WITH(nsajit_compile2(nullptr, &cfg, NSAJIT_BRANCH_WINDOW, NSAJIT_PASS_BACKWARD_DQ, &fwd),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "ctx is NULL");
}

// ---- without a driver: offline PTX and queries ------------------------------------

namespace {

class NoDriverBackward : public ::testing::Test {
protected:
  TempDir cacheDir;
  RecordingCompiler compiler;
  void SetUp() override {
    CudaDriver::resetForTesting("/nonexistent/libcuda.so.1");
    DiskCache::setGlobalForTesting(std::make_shared<DiskCache>(cacheDir.path()));
    PtxCache::global().resetForTesting(compiler.fn());
  }
  void TearDown() override {
    PtxCache::global().resetForTesting(nullptr);
    DiskCache::setGlobalForTesting(std::make_shared<DiskCache>("", "unit tests"));
    CudaDriver::resetForTesting("");
  }
};

} // namespace

TEST_F(NoDriverBackward, KernelQuery2WithoutAContext) {
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  for (Branch b : kBranches)
    for (int p = 0; p < 4; ++p) {
      const KernelPass pass = static_cast<KernelPass>(p);
      SCOPED_TRACE(std::string(branchName(b)) + " " + passName(pass));
      nsajit_kernel_info info{};
      info.struct_size = sizeof info;
      ASSERT_EQ(nsajit_kernel_query2(nullptr, &cfg, static_cast<nsajit_branch>(b), static_cast<nsajit_kernel_pass>(p),
                                     80, &info),
                NSAJIT_OK)
          << nsajit_last_error();
      KernelSpec spec = specFromConfig(&cfg, b, Arch::SM80, pass);
      EXPECT_EQ(info.arch, 80);
      EXPECT_EQ(info.threads_per_cta, threadsPerCta(spec));
      EXPECT_EQ(info.shared_memory_bytes, sharedMemoryBytes(spec));
      EXPECT_EQ(info.tile_warps, spec.tile.warps);
      EXPECT_EQ(info.tile_tokens, spec.tile.tokensPerCta);
      EXPECT_EQ(info.tile_kv_chunk, spec.tile.kvChunk);
      EXPECT_EQ(info.num_regs, -1);
      EXPECT_EQ(std::string(info.kernel_name), spec.kernelName());
      EXPECT_EQ(std::string(info.spec), spec.str());
    }
  // NSAJIT_PASS_FORWARD answers like nsajit_kernel_query.
  nsajit_kernel_info a{}, b{};
  a.struct_size = b.struct_size = sizeof a;
  ASSERT_EQ(nsajit_kernel_query(nullptr, &cfg, NSAJIT_BRANCH_SELECTED, 90, &a), NSAJIT_OK);
  ASSERT_EQ(nsajit_kernel_query2(nullptr, &cfg, NSAJIT_BRANCH_SELECTED, NSAJIT_PASS_FORWARD, 90, &b), NSAJIT_OK);
  EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0);
  EXPECT_STREQ(b.kernel_name, "nsa_selected_fwd");
  EXPECT_ERROR_WITH(
      nsajit_kernel_query2(nullptr, &cfg, NSAJIT_BRANCH_SELECTED, static_cast<nsajit_kernel_pass>(9), 90, &b),
      NSAJIT_ERROR_INVALID_ARGUMENT, "pass = 9");
  EXPECT_ERROR_WITH(nsajit_kernel_query2(nullptr, &cfg, NSAJIT_BRANCH_SELECTED, NSAJIT_PASS_BACKWARD_DQ, 70, &b),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "arch = 70");
  EXPECT_ERROR_WITH(nsajit_kernel_query2(nullptr, &cfg, NSAJIT_BRANCH_SELECTED, NSAJIT_PASS_BACKWARD_DQ, 90, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "info is NULL");
  EXPECT_EQ(compiler.calls, 0); // resources need no compile
}

TEST_F(NoDriverBackward, OfflinePtxOfEachPass) {
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  std::size_t len = 0;
  for (int p = 1; p < 4; ++p) {
    ASSERT_EQ(nsajit_compile_ptx2(&cfg, NSAJIT_BRANCH_COMPRESSED, static_cast<nsajit_kernel_pass>(p), 90, nullptr, 0,
                                  &len),
              NSAJIT_OK)
        << nsajit_last_error();
    EXPECT_EQ(compiler.lastSpec.pass, static_cast<KernelPass>(p));
    const std::string expect = fakePtx(compiler.lastSpec);
    EXPECT_EQ(len, expect.size());
    std::string buf(len + 1, 'x');
    ASSERT_EQ(nsajit_compile_ptx2(&cfg, NSAJIT_BRANCH_COMPRESSED, static_cast<nsajit_kernel_pass>(p), 90, buf.data(),
                                  buf.size(), &len),
              NSAJIT_OK);
    EXPECT_EQ(std::string(buf.c_str()), expect);
  }
  EXPECT_EQ(compiler.calls, 3);
  compiler.failWith = "backward lowering failed";
  EXPECT_ERROR_WITH(nsajit_compile_ptx2(&cfg, NSAJIT_BRANCH_WINDOW, NSAJIT_PASS_BACKWARD_DQ, 80, nullptr, 0, &len),
                    NSAJIT_ERROR_COMPILE_ERROR, "backward lowering failed", "window bwd_dq bf16 sm_80");
  EXPECT_ERROR_WITH(
      nsajit_compile_ptx2(&cfg, NSAJIT_BRANCH_WINDOW, static_cast<nsajit_kernel_pass>(9), 80, nullptr, 0, &len),
      NSAJIT_ERROR_INVALID_ARGUMENT, "pass = 9");
}

TEST_F(NoDriverBackward, NoContextIsAnArgumentError) {
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  nsajit_tensor t{0x1000, 0, 0, 0};
  EXPECT_ERROR_WITH(nsajit_compressed_backward(nullptr, &cfg, 1, 1, &t, &t, &t, &t, &t, &t, nullptr, &t, &t, &t, &t,
                                               nullptr, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_ERROR_WITH(nsajit_selected_backward(nullptr, &cfg, 1, 1, &t, &t, &t, &t, &t, &t, &t, nullptr, &t, &t, &t, &t,
                                             nullptr, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_ERROR_WITH(nsajit_window_backward(nullptr, &cfg, 1, 1, &t, &t, &t, &t, &t, &t, nullptr, &t, &t, &t, &t,
                                           nullptr, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "ctx is NULL");
}

// Needs compileKernel to generate the backward kernels.
TEST_F(NoDriverBackward, RealCompilerProducesTheBackwardKernels) {
  if (!haveCompiler())
    GTEST_SKIP() << "built without the nsajit_compiler target";
  PtxCache::global().resetForTesting(nullptr); // the real compileKernel
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  cfg.num_kv_heads = 1;
  cfg.group = 4;
  cfg.slc_count = 4;
  cfg.window = 64;
  for (Branch b : kBranches)
    for (KernelPass pass : kBwdPasses) {
      KernelSpec spec = specFromConfig(&cfg, b, Arch::SM90a, pass);
      SCOPED_TRACE(spec.str());
      std::size_t len = 0;
      nsajit_status st = nsajit_compile_ptx2(&cfg, static_cast<nsajit_branch>(b), static_cast<nsajit_kernel_pass>(pass),
                                             90, nullptr, 0, &len);
      ASSERT_EQ(st, NSAJIT_OK) << nsajit_last_error();
      std::string ptx(len + 1, '\0');
      ASSERT_EQ(nsajit_compile_ptx2(&cfg, static_cast<nsajit_branch>(b), static_cast<nsajit_kernel_pass>(pass), 90,
                                    ptx.data(), ptx.size(), &len),
                NSAJIT_OK);
      ptx.resize(len);
      // The entry the launcher looks up, declaring the 57 parameters of BackwardKernelArgs.
      const std::string entry = ".entry " + spec.kernelName() + "(";
      std::size_t at = ptx.find(entry);
      ASSERT_NE(at, std::string::npos);
      std::string params = ptx.substr(at, ptx.find(')', at) - at);
      int u64 = 0, u32 = 0;
      for (std::size_t p = params.find(".param .u64"); p != std::string::npos; p = params.find(".param .u64", p + 1))
        ++u64;
      for (std::size_t p = params.find(".param .u32"); p != std::string::npos; p = params.find(".param .u32", p + 1))
        ++u32;
      EXPECT_EQ(u64, 54);
      EXPECT_EQ(u32, 3);
      EXPECT_NE(ptx.find("sm_90a"), std::string::npos);
    }
}

namespace {

// The gated combination on the fake driver: one kernel per dtype and Dv, the
// parameter block of CombineKernelArgs, and the argument checks.
class FakeGpuCombine : public FakeGpuBackward {
protected:
  static constexpr int B = 2, T = 100;
  int HQ() const { return cfg.num_kv_heads * cfg.group; }
  std::vector<std::unique_ptr<FakeBuffer>> buffers;
  nsajit_tensor half() { // [B, T, HQ, Dv], contiguous
    const std::int64_t dv = cfg.head_dim_v, rows = std::int64_t(B) * T * HQ();
    buffers.push_back(std::make_unique<FakeBuffer>(rows * dv * 2));
    return {buffers.back()->ptr(), std::int64_t(T) * HQ() * dv, std::int64_t(HQ()) * dv, dv};
  }
  nsajit_tensor row() { // [B, T, HQ] float32
    buffers.push_back(std::make_unique<FakeBuffer>(std::int64_t(B) * T * HQ() * 4));
    return {buffers.back()->ptr(), std::int64_t(T) * HQ(), HQ(), 1};
  }
};

TEST_F(FakeGpuCombine, LaunchesOneKernelWithTheCombineAbi) {
  nsajit_context *ctx = create();
  nsajit_tensor oc = half(), os = half(), ow = half(), out = half(), gc = row(), gw = row();
  ASSERT_EQ(nsajit_gated_combine(ctx, &cfg, B, T, &oc, &gc, &os, nullptr, &ow, &gw, &out, nullptr), NSAJIT_OK)
      << nsajit_last_error();
  std::vector<FakeCudaLaunch> launches = fake.launches();
  ASSERT_EQ(launches.size(), 1u);
  const FakeCudaLaunch &l = launches[0];
  EXPECT_EQ(std::string(l.kernel_name), "nsa_window_combine");
  const unsigned vectors = unsigned(B * T * HQ() * cfg.head_dim_v / 8);
  EXPECT_EQ(l.grid[0], (vectors + 255) / 256);
  EXPECT_EQ(l.block[0], 256u);
  ASSERT_EQ(l.num_u64, 28);
  ASSERT_EQ(l.num_i32, 3);
  const std::uint64_t ptrs[7] = {oc.data, os.data, ow.data, gc.data, 0, gw.data, out.data};
  for (int i = 0; i < 7; ++i)
    EXPECT_EQ(l.u64[i], ptrs[i]) << "pointer " << i;
  EXPECT_EQ(static_cast<std::int64_t>(l.u64[7 + 1]), oc.stride_token);
  EXPECT_EQ(static_cast<std::int64_t>(l.u64[7 + 3 * 3 + 1]), gc.stride_token);
  EXPECT_EQ(l.u64[7 + 3 * 4], 0u); // the absent gate's strides
  EXPECT_EQ(l.i32[0], T);
  EXPECT_EQ(l.i32[1], HQ());
  EXPECT_EQ(l.i32[2], B);
  // One kernel serves every configuration with the same dtype and Dv.
  nsajit_config other = cfg;
  other.group = 4, other.window = 64, other.head_dim_qk = 192;
  EXPECT_EQ(combineSpec(&other, Arch::SM90a), combineSpec(&cfg, Arch::SM90a));
}

TEST_F(FakeGpuCombine, BadArgumentsAreRejectedBeforeLaunching) {
  nsajit_context *ctx = create();
  nsajit_tensor oc = half(), os = half(), ow = half(), out = half(), g = row();
  EXPECT_ERROR_WITH(nsajit_gated_combine(ctx, &cfg, B, T, nullptr, nullptr, &os, nullptr, &ow, nullptr, &out, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "o_cmp");
  EXPECT_ERROR_WITH(nsajit_gated_combine(ctx, &cfg, B, T, &oc, nullptr, &os, nullptr, &ow, nullptr, nullptr, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "out");
  nsajit_tensor strided = os;
  strided.stride_head = 132; // 8-byte multiples only: rows lose their 16-byte alignment
  EXPECT_ERROR_WITH(nsajit_gated_combine(ctx, &cfg, B, T, &oc, nullptr, &strided, nullptr, &ow, nullptr, &out, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "o_slc");
  nsajit_tensor odd = ow;
  odd.data += 2; // 2-byte aligned: rows are read in 16-byte vectors
  EXPECT_ERROR_WITH(nsajit_gated_combine(ctx, &cfg, B, T, &oc, nullptr, &os, nullptr, &odd, nullptr, &out, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "o_swa", "16-byte");
  EXPECT_ERROR_WITH(nsajit_gated_combine(ctx, &cfg, B, T, &oc, nullptr, &os, nullptr, &ow, nullptr, &oc, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "overlap");
  nsajit_tensor badGate = g;
  badGate.stride_head = 2;
  EXPECT_ERROR_WITH(nsajit_gated_combine(ctx, &cfg, B, T, &oc, &badGate, &os, nullptr, &ow, nullptr, &out, nullptr),
                    NSAJIT_ERROR_INVALID_ARGUMENT, "g_cmp");
  nsajit_config badGroup = cfg;
  badGroup.group = 3;
  EXPECT_ERROR_WITH(nsajit_gated_combine(ctx, &badGroup, B, T, &oc, nullptr, &os, nullptr, &ow, nullptr, &out, nullptr),
                    NSAJIT_ERROR_UNSUPPORTED, "group (G) = 3");
  EXPECT_EQ(fake.launches().size(), 0u);
  // The branches' tile overrides do not concern the combination.
  nsajit_config tiled = cfg;
  tiled.tile_warps = 1, tiled.tile_tokens = 8; // 128 rows in one warp: not a forward tile
  EXPECT_EQ(nsajit_gated_combine(ctx, &tiled, B, T, &oc, nullptr, &os, nullptr, &ow, nullptr, &out, nullptr), NSAJIT_OK)
      << nsajit_last_error();
}

} // namespace
