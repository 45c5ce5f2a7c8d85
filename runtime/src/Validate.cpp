#include "Validate.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>

namespace nsajit::rt {

namespace {

constexpr std::size_t kConfigMinSize = offsetof(nsajit_config, tile_warps); // fields of ABI 1 that must be present

const char *cDtypeName(int dtype) { return dtype == NSAJIT_DTYPE_FP16 ? "fp16" : "bf16"; }

struct Dim {
  std::int64_t extent;
  std::int64_t stride;
  const char *strideName;
};

// How one tensor argument must look.
struct TensorRule {
  const char *name;       // "q"
  const char *shape;      // "[B, T, HQ, Dk]"
  const char *elemName;   // "bf16", "int32", "float32"
  int elemBytes;
  int align;              // bytes
  int strideMultiple;     // elements
  bool output;
  Dim outer[3];           // batch, token, head (row tensors: batch, token, and head as inner)
  int numOuter;           // 3, or 2 for row tensors
  std::int64_t inner;     // contiguous innermost extent
  const char *innerStrideName; // row tensors: "stride_head" (must be 1); nullptr otherwise
  std::int64_t innerStride;    // the stride the caller gave for the inner dim (row tensors only)
};

TensorSpan checkTensor(const TensorRule &r, const nsajit_tensor *t) {
  if (!t)
    invalidArgument("{} is NULL: pass an nsajit_tensor view of {} {}", r.name, r.shape, r.elemName);
  std::int64_t elements = r.inner;
  for (int i = 0; i < r.numOuter; ++i)
    elements *= r.outer[i].extent;
  TensorSpan span;
  span.name = r.name;
  span.shape = r.shape;
  span.output = r.output;
  span.data = t->data;
  if (elements == 0)
    return span; // nothing is read or written (compressed branch with Tc == 0)
  if (t->data == 0)
    invalidArgument("{}.data is NULL: {} {} needs {} elements of device memory", r.name, r.shape, r.elemName,
                    elements);
  if (t->data % static_cast<std::uint64_t>(r.align) != 0)
    invalidArgument("{}.data = {:#x} is not {}-byte aligned: {} tensors must start on a {}-byte boundary", r.name,
                    t->data, r.align, r.elemName, r.align);
  for (int i = 0; i < r.numOuter; ++i) {
    const Dim &d = r.outer[i];
    if (d.extent <= 1)
      continue; // never multiplied by a non-zero index
    if (d.stride < 0)
      invalidArgument("{}.{} = {} is negative: strides must be >= 0 (in elements)", r.name, d.strideName, d.stride);
    if (r.output && d.stride == 0)
      invalidArgument("{}.{} = 0: {} is an output {}, its strides must be > 0 (an output cannot broadcast)", r.name,
                      d.strideName, r.name, r.shape);
    if (d.stride % r.strideMultiple != 0)
      invalidArgument("{}.{} = {} is not a multiple of {} elements ({} bytes): rows of {} tensors must stay "
                      "16-byte aligned",
                      r.name, d.strideName, d.stride, r.strideMultiple, r.strideMultiple * r.elemBytes, r.elemName);
  }
  if (r.innerStrideName && r.inner > 1 && r.innerStride != 1)
    invalidArgument("{}.{} = {}: the last dimension of {} {} must be contiguous (stride 1)", r.name,
                    r.innerStrideName, r.innerStride, r.name, r.shape);

  // The memory touched: [data, data + bytes).
  __int128 maxOffset = r.inner;
  for (int i = 0; i < r.numOuter; ++i)
    if (r.outer[i].extent > 1)
      maxOffset += static_cast<__int128>(r.outer[i].extent - 1) * r.outer[i].stride;
  __int128 bytes = maxOffset * r.elemBytes;
  if (bytes > (static_cast<__int128>(1) << 62) ||
      static_cast<__int128>(t->data) + bytes > (static_cast<__int128>(1) << 64))
    invalidArgument("{} {} with strides (batch {}, token {}, head {}) spans more than 2^62 bytes from {:#x}: strides "
                    "too large",
                    r.name, r.shape, t->stride_batch, t->stride_token, t->stride_head, t->data);
  span.bytes = static_cast<std::uint64_t>(bytes);
  span.innerBytes = r.inner * r.elemBytes;
  for (int i = 0; i < r.numOuter; ++i)
    if (r.outer[i].extent > 1)
      span.dims[static_cast<std::size_t>(span.numDims++)] = {r.outer[i].extent, r.outer[i].stride * r.elemBytes};

  if (r.output) {
    // Distinct elements must map to distinct addresses: sorted by stride, every
    // stride must exceed the largest offset reachable with the smaller ones.
    Dim dims[4];
    int n = 0;
    for (int i = 0; i < r.numOuter; ++i)
      if (r.outer[i].extent > 1)
        dims[n++] = r.outer[i];
    std::sort(dims, dims + n, [](const Dim &a, const Dim &b) { return a.stride < b.stride; });
    __int128 reach = r.inner - 1;
    for (int i = 0; i < n; ++i) {
      if (dims[i].stride <= reach)
        invalidArgument("{} strides (stride_batch = {}, stride_token = {}, stride_head = {}) make different elements "
                        "of the output {} {} overlap: an output must not alias itself",
                        r.name, t->stride_batch, t->stride_token, t->stride_head, r.name, r.shape);
      reach += static_cast<__int128>(dims[i].extent - 1) * dims[i].stride;
    }
  }
  return span;
}

void checkBatchAndLength(int batch, int seqLen) {
  if (batch < 1 || batch > kMaxBatch)
    invalidArgument("batch = {} is out of range; allowed: 1..{}", batch, kMaxBatch);
  if (seqLen < 1)
    invalidArgument("seq_len = {} is out of range; allowed: 1..{}", seqLen, std::numeric_limits<std::int32_t>::max());
}

void setOuter(TensorRule &r, std::int64_t B, std::int64_t N, std::int64_t heads, const nsajit_tensor *t) {
  if (!t)
    return;
  r.outer[0] = {B, t->stride_batch, "stride_batch"};
  r.outer[1] = {N, t->stride_token, "stride_token"};
  r.outer[2] = {heads, t->stride_head, "stride_head"};
}

// Where the byte offset `off` of a view falls modulo `period`: the view's bytes
// lie in the circular interval [start, start + reach) of Z_period when every
// dimension either has a stride that is a multiple of the period or belongs to
// the "fine" dimensions whose whole reach (with the contiguous run) fits in one
// period. Returns the reach, or -1 when the view does not fit that pattern.
__int128 reachModulo(const TensorSpan &s, std::int64_t period) {
  __int128 reach = s.innerBytes;
  for (int i = 0; i < s.numDims; ++i) {
    const TensorSpan::Dim &d = s.dims[static_cast<std::size_t>(i)];
    if (d.strideBytes % period == 0)
      continue;
    reach += static_cast<__int128>(d.extent - 1) * d.strideBytes;
  }
  return reach <= period ? reach : -1;
}

} // namespace

// ---- tensors and their memory ---------------------------------------------------

void SpanList::add(const TensorSpan &s) {
  if (count >= static_cast<int>(items.size()))
    fail(NSAJIT_ERROR_INTERNAL, "more than {} tensor arguments", items.size());
  items[static_cast<std::size_t>(count++)] = s;
}

bool disjoint(const TensorSpan &a, const TensorSpan &b) {
  if (a.bytes == 0 || b.bytes == 0)
    return true;
  if (a.data + a.bytes <= b.data || b.data + b.bytes <= a.data)
    return true;
  // Interleaved views: try every stride of either view as the common period.
  for (const TensorSpan *s : {&a, &b})
    for (int i = 0; i < s->numDims; ++i) {
      std::int64_t period = s->dims[static_cast<std::size_t>(i)].strideBytes;
      if (period <= 0)
        continue;
      __int128 ra = reachModulo(a, period), rb = reachModulo(b, period);
      if (ra < 0 || rb < 0)
        continue;
      __int128 diff = (static_cast<__int128>(b.data) - static_cast<__int128>(a.data)) % period;
      if (diff < 0)
        diff += period;
      // a covers [0, ra), b covers [diff, diff + rb) in Z_period.
      if (ra <= diff && diff + rb <= period)
        return true;
    }
  return false;
}

void checkNoOverlap(const SpanList &spans) {
  for (int i = 0; i < spans.count; ++i) {
    const TensorSpan &out = spans[i];
    if (!out.output)
      continue;
    for (int j = 0; j < spans.count; ++j) {
      const TensorSpan &other = spans[j];
      if (j == i || (other.output && j < i))
        continue; // each pair of outputs once
      if (disjoint(out, other))
        continue;
      invalidArgument("{} {} at [{:#x}, {:#x}) and {} {} at [{:#x}, {:#x}) share memory: the output {} must not "
                      "overlap {} {} (outputs must not overlap each other or any input)",
                      out.name, out.shape, out.data, out.data + out.bytes, other.name, other.shape, other.data,
                      other.data + other.bytes, out.name, other.output ? "the output" : "the input", other.name);
    }
  }
}

TensorStrides3 stridesOf(const nsajit_tensor *t) {
  if (!t)
    return {};
  return {t->stride_batch, t->stride_token, t->stride_head};
}

ProblemShape problemShape(const nsajit_config *config, const KernelSpec &spec, int batch, int seqLen) {
  ProblemShape p;
  p.config = readConfig(config);
  checkBatchAndLength(batch, seqLen);
  p.branch = spec.branch;
  p.B = batch;
  p.T = seqLen;
  p.H = p.config.num_kv_heads;
  p.G = spec.group;
  p.HQ = p.H * p.G;
  p.Dk = spec.headDimQK;
  p.Dv = spec.headDimV;
  p.n = spec.slcCount;
  const bool cmp = spec.branch == Branch::Compressed;
  p.Tkv = cmp ? compressedLength(seqLen, spec.cmpBlock, spec.cmpStride) : seqLen;
  if (cmp) {
    p.kName = "k_cmp";
    p.vName = "v_cmp";
    p.kShape = "[B, Tc, H, Dk]";
    p.vShape = "[B, Tc, H, Dv]";
  }
  return p;
}

TensorSpan checkHalfTensor(const ProblemShape &p, const char *name, const char *shape, bool output, std::int64_t N,
                           std::int64_t heads, std::int64_t dim, const nsajit_tensor *t) {
  TensorRule r{};
  r.name = name;
  r.shape = shape;
  r.elemName = cDtypeName(p.config.dtype);
  r.elemBytes = 2;
  r.align = 16;
  r.strideMultiple = 8;
  r.output = output;
  r.numOuter = 3;
  r.inner = dim;
  setOuter(r, p.B, N, heads, t);
  return checkTensor(r, t);
}

TensorSpan checkRowTensor(const ProblemShape &p, const char *name, bool output, const nsajit_tensor *t) {
  TensorRule r{};
  r.name = name;
  r.shape = "[B, T, HQ]";
  r.elemName = "float32";
  r.elemBytes = 4;
  r.align = 4;
  r.strideMultiple = 1;
  r.output = output;
  r.numOuter = 2;
  r.inner = p.HQ;
  r.innerStrideName = "stride_head";
  if (t) {
    r.outer[0] = {p.B, t->stride_batch, "stride_batch"};
    r.outer[1] = {p.T, t->stride_token, "stride_token"};
    r.innerStride = t->stride_head;
  }
  return checkTensor(r, t);
}

TensorSpan checkIndicesTensor(const ProblemShape &p, const nsajit_tensor *t, bool output) {
  TensorRule r{};
  r.name = "indices";
  r.shape = "[B, T, H, n]";
  r.elemName = "int32";
  r.elemBytes = 4;
  r.align = 4;
  r.strideMultiple = 1;
  r.output = output;
  r.numOuter = 3;
  r.inner = p.n;
  setOuter(r, p.B, p.T, p.H, t);
  return checkTensor(r, t);
}

LaunchDims launchDims(const KernelSpec &spec, const ProblemShape &p) {
  LaunchDims d;
  d.spec = spec;
  const bool keys = spec.pass == KernelPass::BackwardDKDV;
  // A warp-specialised forward CTA walks several token tiles (1 for every other kernel).
  const std::int64_t perCta =
      keys ? spec.tile.kvChunk : std::int64_t{spec.tile.tokensPerCta} * forwardTilesPerCta(spec);
  const std::int64_t extent = keys ? p.Tkv : p.T;
  if (perCta < 1)
    fail(NSAJIT_ERROR_INTERNAL, "tile {} per CTA is {} after defaults for {}", keys ? "keys" : "tokens", perCta,
         spec.str());
  const std::int64_t gridX = (extent + perCta - 1) / perCta;
  if (gridX > std::numeric_limits<std::int32_t>::max())
    invalidArgument("seq_len = {} needs {} CTAs along grid x for {} ({} {} each); the limit is 2^31-1", p.T, gridX,
                    spec.kernelName(), perCta, keys ? "keys" : "tokens");
  d.grid = {static_cast<unsigned>(gridX), static_cast<unsigned>(p.H), static_cast<unsigned>(p.B)};
  d.threads = static_cast<unsigned>(threadsPerCta(spec));
  d.sharedBytes = static_cast<unsigned>(sharedMemoryBytes(spec));
  return d;
}

// ---- config, branch, pass, arch -------------------------------------------------

nsajit_config defaultConfig() {
  nsajit_config c{};
  c.struct_size = sizeof(nsajit_config);
  c.dtype = NSAJIT_DTYPE_BF16;
  c.head_dim_qk = 128;
  c.head_dim_v = 128;
  c.num_kv_heads = 4;
  c.group = 16;
  c.cmp_block = 32;
  c.cmp_stride = 16;
  c.slc_block = 64;
  c.slc_count = 16;
  c.window = 512;
  c.scale = 0.0f;
  c.tile_warps = 0;
  c.tile_tokens = 0;
  c.tile_kv_chunk = 0;
  c.slc_initial = 1;
  c.slc_local = 2;
  return c;
}

nsajit_config readConfig(const nsajit_config *config) {
  if (!config)
    invalidArgument("config is NULL: fill an nsajit_config with nsajit_config_init() and pass its address");
  std::uint32_t size = config->struct_size;
  if (size < kConfigMinSize || size > 65536)
    invalidArgument("config->struct_size = {} is not a valid size (this library's nsajit_config is {} bytes): "
                    "initialise the config with nsajit_config_init()",
                    size, sizeof(nsajit_config));
  nsajit_config c = defaultConfig();
  std::memcpy(&c, config, std::min<std::size_t>(size, sizeof c));
  if (size > sizeof c) {
    const unsigned char *extra = reinterpret_cast<const unsigned char *>(config) + sizeof c;
    for (std::size_t i = 0; i < size - sizeof c; ++i)
      if (extra[i] != 0)
        fail(NSAJIT_ERROR_UNSUPPORTED,
             "config sets fields this libnsajit ({}) does not know (struct_size = {}, known: {}): use a newer "
             "libnsajit or leave the new fields 0",
             NSAJIT_VERSION_STRING, size, sizeof c);
  }
  c.struct_size = sizeof c;
  return c;
}

Branch branchFromC(int branch) {
  switch (branch) {
  case NSAJIT_BRANCH_COMPRESSED: return Branch::Compressed;
  case NSAJIT_BRANCH_SELECTED: return Branch::Selected;
  case NSAJIT_BRANCH_WINDOW: return Branch::Window;
  default: break;
  }
  invalidArgument("branch = {} is unknown; allowed: NSAJIT_BRANCH_COMPRESSED (0), NSAJIT_BRANCH_SELECTED (1), "
                  "NSAJIT_BRANCH_WINDOW (2)",
                  branch);
}

KernelPass passFromC(int pass) {
  switch (pass) {
  case NSAJIT_PASS_FORWARD: return KernelPass::Forward;
  case NSAJIT_PASS_BACKWARD_PRE: return KernelPass::BackwardPreprocess;
  case NSAJIT_PASS_BACKWARD_DQ: return KernelPass::BackwardDQ;
  case NSAJIT_PASS_BACKWARD_DKDV: return KernelPass::BackwardDKDV;
  case NSAJIT_PASS_TOPN: return KernelPass::TopN;
  case NSAJIT_PASS_POOL: return KernelPass::Compress;
  case NSAJIT_PASS_POOL_BWD: return KernelPass::CompressBackward;
  case NSAJIT_PASS_POOL_DW: return KernelPass::CompressWeightGrad;
  case NSAJIT_PASS_COMBINE: return KernelPass::Combine;
  default: break;
  }
  invalidArgument("pass = {} is unknown; allowed: NSAJIT_PASS_FORWARD (0), NSAJIT_PASS_BACKWARD_PRE (1), "
                  "NSAJIT_PASS_BACKWARD_DQ (2), NSAJIT_PASS_BACKWARD_DKDV (3), NSAJIT_PASS_TOPN (4), "
                  "NSAJIT_PASS_POOL (5), NSAJIT_PASS_POOL_BWD (6), NSAJIT_PASS_POOL_DW (7), NSAJIT_PASS_COMBINE (8)",
                  pass);
}

Arch archFromInt(int arch) {
  if (arch == 80)
    return Arch::SM80;
  if (arch == 90)
    return Arch::SM90a;
  invalidArgument("arch = {} is unknown; allowed: 80 (sm_80) and 90 (sm_90a)", arch);
}

KernelSpec specFromConfig(const nsajit_config *config, Branch branch, Arch arch, KernelPass pass) {
  nsajit_config c = readConfig(config);
  if (c.dtype != NSAJIT_DTYPE_BF16 && c.dtype != NSAJIT_DTYPE_FP16)
    fail(NSAJIT_ERROR_UNSUPPORTED, "config->dtype = {} is not supported; allowed: NSAJIT_DTYPE_BF16 (0), "
                                   "NSAJIT_DTYPE_FP16 (1)",
         c.dtype);
  if (c.num_kv_heads < 1 || c.num_kv_heads > kMaxKvHeads)
    invalidArgument("config->num_kv_heads (H) = {} is out of range; allowed: 1..{}", c.num_kv_heads, kMaxKvHeads);
  KernelSpec s;
  s.branch = branch;
  s.pass = pass;
  s.dtype = c.dtype == NSAJIT_DTYPE_FP16 ? DType::FP16 : DType::BF16;
  s.arch = arch;
  s.headDimQK = c.head_dim_qk;
  s.headDimV = c.head_dim_v;
  s.group = c.group;
  s.cmpBlock = c.cmp_block;
  s.cmpStride = c.cmp_stride;
  s.slcBlock = c.slc_block;
  s.slcCount = c.slc_count;
  s.window = c.window;
  s.scale = c.scale;
  s.slcInitial = c.slc_initial;
  s.slcLocal = c.slc_local;
  if (pass == KernelPass::Forward) {
    s.tile.warps = c.tile_warps;
    s.tile.tokensPerCta = c.tile_tokens;
    s.tile.kvChunk = c.tile_kv_chunk;
  } else if (pass == KernelPass::BackwardDQ && branch == Branch::Selected) {
    // The selected dQ kernel follows the forward's schedule: tokens a CTA (1: per token, more: the
    // union of their blocks); its warps and chunk are its own defaults.
    s.tile.tokensPerCta = c.tile_tokens;
  }
  // The forward's messages name the config alone; the backward's also the kernel.
  const std::string what = pass == KernelPass::Forward ? std::string() : " (" + s.kernelName() + ")";
  std::string err = validate(s);
  if (!err.empty())
    fail(NSAJIT_ERROR_UNSUPPORTED, "config{}: {}", what, err);
  s = withDefaultTiles(s);
  err = validate(s); // the defaults must be valid too
  if (!err.empty())
    fail(NSAJIT_ERROR_UNSUPPORTED, "config with default tiles{}: {}", what, err);
  int threads = threadsPerCta(s);
  if (threads < 32 || threads > 1024)
    fail(NSAJIT_ERROR_UNSUPPORTED, "config{}: the tile needs {} threads per CTA; allowed: 32..1024", what, threads);
  return s;
}

int compressedLength(int seqLen, int cmpBlock, int cmpStride) {
  if (cmpStride < 1 || cmpBlock < 1 || seqLen < cmpBlock)
    return 0;
  return (seqLen - cmpBlock) / cmpStride + 1;
}

// ---- forward ---------------------------------------------------------------------

PreparedLaunch prepareForward(const ForwardRequest &req, Arch arch) {
  PreparedLaunch p;
  p.spec = specFromConfig(req.config, req.branch, arch);
  const KernelSpec &s = p.spec;
  const ProblemShape ps = problemShape(req.config, s, req.batch, req.seqLen);
  const bool slc = s.branch == Branch::Selected;

  SpanList &sp = p.spans;
  sp.add(checkHalfTensor(ps, "q", "[B, T, HQ, Dk]", false, ps.T, ps.HQ, ps.Dk, req.q));
  sp.add(checkHalfTensor(ps, ps.kName, ps.kShape, false, ps.Tkv, ps.H, ps.Dk, req.k));
  sp.add(checkHalfTensor(ps, ps.vName, ps.vShape, false, ps.Tkv, ps.H, ps.Dv, req.v));
  if (slc)
    sp.add(checkIndicesTensor(ps, req.indices));
  sp.add(checkHalfTensor(ps, "out", "[B, T, HQ, Dv]", true, ps.T, ps.HQ, ps.Dv, req.out));
  sp.add(checkRowTensor(ps, "lse", true, req.lse));
  checkNoOverlap(sp);

  ForwardKernelArgs &a = p.args;
  a.q = req.q->data;
  a.k = req.k->data;
  a.v = req.v->data;
  a.idx = slc ? req.indices->data : 0;
  a.o = req.out->data;
  a.lse = req.lse->data;
  a.qs = stridesOf(req.q);
  a.ks = stridesOf(req.k);
  a.vs = stridesOf(req.v);
  a.idxs = slc ? stridesOf(req.indices) : TensorStrides3{};
  a.os = stridesOf(req.out);
  a.lses = stridesOf(req.lse);
  a.seqLen = req.seqLen;
  a.kvLen = static_cast<std::int32_t>(ps.Tkv);

  LaunchDims d = launchDims(s, ps);
  p.grid = d.grid;
  p.threads = d.threads;
  p.sharedBytes = d.sharedBytes;
  return p;
}

TensorSpan checkIndicesView(const nsajit_config *config, int batch, int seqLen, const nsajit_tensor *indices,
                            KernelSpec &specOut) {
  specOut = specFromConfig(config, Branch::Selected, Arch::SM90a);
  return checkIndicesTensor(problemShape(config, specOut, batch, seqLen), indices);
}

std::array<void *, kForwardKernelParamCount> kernelParams(ForwardKernelArgs &a) {
  std::array<void *, kForwardKernelParamCount> p = {
      &a.q,          &a.k,         &a.v,          &a.idx,         &a.o,          &a.lse,         &a.tokenDone,
      &a.qs.batch,   &a.qs.token,  &a.qs.head,    &a.ks.batch,    &a.ks.token,   &a.ks.head,
      &a.vs.batch,   &a.vs.token,  &a.vs.head,    &a.idxs.batch,  &a.idxs.token, &a.idxs.head,
      &a.os.batch,   &a.os.token,  &a.os.head,    &a.lses.batch,  &a.lses.token, &a.lses.head,
      &a.seqLen,     &a.kvLen};
  return p;
}

} // namespace nsajit::rt
