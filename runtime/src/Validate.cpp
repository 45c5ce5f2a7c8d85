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
  Dim outer[3];           // batch, token, head (lse: batch, token, and head as inner)
  int numOuter;           // 3, or 2 for lse
  std::int64_t inner;     // contiguous innermost extent
  const char *innerStrideName; // lse: "stride_head" (must be 1); nullptr otherwise
  std::int64_t innerStride;    // the stride the caller gave for the inner dim (lse only)
};

TensorSpan checkTensor(const TensorRule &r, const nsajit_tensor *t) {
  if (!t)
    invalidArgument("{} is NULL: pass an nsajit_tensor view of {} {}", r.name, r.shape, r.elemName);
  std::int64_t elements = r.inner;
  for (int i = 0; i < r.numOuter; ++i)
    elements *= r.outer[i].extent;
  TensorSpan span{r.name, t->data, 0};
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

TensorRule halfRule(const char *name, const char *shape, int dtype, bool output, std::int64_t B, std::int64_t T,
                    std::int64_t heads, std::int64_t dim, const nsajit_tensor *t) {
  TensorRule r{};
  r.name = name;
  r.shape = shape;
  r.elemName = cDtypeName(dtype);
  r.elemBytes = 2;
  r.align = 16;
  r.strideMultiple = 8;
  r.output = output;
  r.numOuter = 3;
  r.inner = dim;
  if (t) {
    r.outer[0] = {B, t->stride_batch, "stride_batch"};
    r.outer[1] = {T, t->stride_token, "stride_token"};
    r.outer[2] = {heads, t->stride_head, "stride_head"};
  }
  return r;
}

TensorRule indicesRule(std::int64_t B, std::int64_t T, std::int64_t H, std::int64_t n, const nsajit_tensor *t) {
  TensorRule r{};
  r.name = "indices";
  r.shape = "[B, T, H, n]";
  r.elemName = "int32";
  r.elemBytes = 4;
  r.align = 4;
  r.strideMultiple = 1;
  r.output = false;
  r.numOuter = 3;
  r.inner = n;
  if (t) {
    r.outer[0] = {B, t->stride_batch, "stride_batch"};
    r.outer[1] = {T, t->stride_token, "stride_token"};
    r.outer[2] = {H, t->stride_head, "stride_head"};
  }
  return r;
}

TensorRule lseRule(std::int64_t B, std::int64_t T, std::int64_t HQ, const nsajit_tensor *t) {
  TensorRule r{};
  r.name = "lse";
  r.shape = "[B, T, HQ]";
  r.elemName = "float32";
  r.elemBytes = 4;
  r.align = 4;
  r.strideMultiple = 1;
  r.output = true;
  r.numOuter = 2;
  r.inner = HQ;
  r.innerStrideName = "stride_head";
  if (t) {
    r.outer[0] = {B, t->stride_batch, "stride_batch"};
    r.outer[1] = {T, t->stride_token, "stride_token"};
    r.innerStride = t->stride_head;
  }
  return r;
}

TensorStrides3 strides(const nsajit_tensor *t) {
  if (!t)
    return {};
  return {t->stride_batch, t->stride_token, t->stride_head};
}

} // namespace

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

Arch archFromInt(int arch) {
  if (arch == 80)
    return Arch::SM80;
  if (arch == 90)
    return Arch::SM90a;
  invalidArgument("arch = {} is unknown; allowed: 80 (sm_80) and 90 (sm_90a)", arch);
}

KernelSpec specFromConfig(const nsajit_config *config, Branch branch, Arch arch) {
  nsajit_config c = readConfig(config);
  if (c.dtype != NSAJIT_DTYPE_BF16 && c.dtype != NSAJIT_DTYPE_FP16)
    fail(NSAJIT_ERROR_UNSUPPORTED, "config->dtype = {} is not supported; allowed: NSAJIT_DTYPE_BF16 (0), "
                                   "NSAJIT_DTYPE_FP16 (1)",
         c.dtype);
  if (c.num_kv_heads < 1 || c.num_kv_heads > kMaxKvHeads)
    invalidArgument("config->num_kv_heads (H) = {} is out of range; allowed: 1..{}", c.num_kv_heads, kMaxKvHeads);
  KernelSpec s;
  s.branch = branch;
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
  s.tile.warps = c.tile_warps;
  s.tile.tokensPerCta = c.tile_tokens;
  s.tile.kvChunk = c.tile_kv_chunk;
  std::string err = validate(s);
  if (!err.empty())
    fail(NSAJIT_ERROR_UNSUPPORTED, "config: {}", err);
  s = withDefaultTiles(s);
  err = validate(s); // the defaults must be valid too
  if (!err.empty())
    fail(NSAJIT_ERROR_UNSUPPORTED, "config with default tiles: {}", err);
  int threads = threadsPerCta(s);
  if (threads < 32 || threads > 1024)
    fail(NSAJIT_ERROR_UNSUPPORTED, "config: the tile needs {} threads per CTA; allowed: 32..1024", threads);
  return s;
}

int compressedLength(int seqLen, int cmpBlock, int cmpStride) {
  if (cmpStride < 1 || cmpBlock < 1 || seqLen < cmpBlock)
    return 0;
  return (seqLen - cmpBlock) / cmpStride + 1;
}

PreparedLaunch prepareForward(const ForwardRequest &req, Arch arch) {
  PreparedLaunch p;
  p.spec = specFromConfig(req.config, req.branch, arch);
  const KernelSpec &s = p.spec;
  const nsajit_config c = readConfig(req.config);
  checkBatchAndLength(req.batch, req.seqLen);

  const std::int64_t B = req.batch, T = req.seqLen, H = c.num_kv_heads, G = s.group, HQ = H * G;
  const std::int64_t Dk = s.headDimQK, Dv = s.headDimV;
  const bool cmp = s.branch == Branch::Compressed;
  const std::int64_t Tkv = cmp ? compressedLength(req.seqLen, s.cmpBlock, s.cmpStride) : T;
  const char *kName = cmp ? "k_cmp" : "k";
  const char *vName = cmp ? "v_cmp" : "v";
  const char *kShape = cmp ? "[B, Tc, H, Dk]" : "[B, T, H, Dk]";
  const char *vShape = cmp ? "[B, Tc, H, Dv]" : "[B, T, H, Dv]";

  int n = 0;
  p.spans[n++] = checkTensor(halfRule("q", "[B, T, HQ, Dk]", c.dtype, false, B, T, HQ, Dk, req.q), req.q);
  p.spans[n++] = checkTensor(halfRule(kName, kShape, c.dtype, false, B, Tkv, H, Dk, req.k), req.k);
  p.spans[n++] = checkTensor(halfRule(vName, vShape, c.dtype, false, B, Tkv, H, Dv, req.v), req.v);
  if (s.branch == Branch::Selected)
    p.spans[n++] = checkTensor(indicesRule(B, T, H, s.slcCount, req.indices), req.indices);
  p.spans[n++] = checkTensor(halfRule("out", "[B, T, HQ, Dv]", c.dtype, true, B, T, HQ, Dv, req.out), req.out);
  p.spans[n++] = checkTensor(lseRule(B, T, HQ, req.lse), req.lse);
  p.numSpans = n;

  ForwardKernelArgs &a = p.args;
  a.q = req.q->data;
  a.k = req.k->data;
  a.v = req.v->data;
  a.idx = s.branch == Branch::Selected ? req.indices->data : 0;
  a.o = req.out->data;
  a.lse = req.lse->data;
  a.qs = strides(req.q);
  a.ks = strides(req.k);
  a.vs = strides(req.v);
  a.idxs = s.branch == Branch::Selected ? strides(req.indices) : TensorStrides3{};
  a.os = strides(req.out);
  a.lses = strides(req.lse);
  a.seqLen = req.seqLen;
  a.kvLen = static_cast<std::int32_t>(Tkv);

  const std::int64_t tokensPerCta = s.tile.tokensPerCta;
  if (tokensPerCta < 1)
    fail(NSAJIT_ERROR_INTERNAL, "tile tokens per CTA is {} after defaults for {}", tokensPerCta, s.str());
  const std::int64_t gridX = (T + tokensPerCta - 1) / tokensPerCta;
  if (gridX > std::numeric_limits<std::int32_t>::max())
    invalidArgument("seq_len = {} needs {} CTAs along grid x ({} tokens each); the limit is 2^31-1", T, gridX,
                    tokensPerCta);
  p.grid = {static_cast<unsigned>(gridX), static_cast<unsigned>(H), static_cast<unsigned>(B)};
  p.threads = static_cast<unsigned>(threadsPerCta(s));
  p.sharedBytes = static_cast<unsigned>(sharedMemoryBytes(s));
  return p;
}

TensorSpan checkIndicesView(const nsajit_config *config, int batch, int seqLen, const nsajit_tensor *indices,
                            KernelSpec &specOut) {
  specOut = specFromConfig(config, Branch::Selected, Arch::SM90a);
  const nsajit_config c = readConfig(config);
  checkBatchAndLength(batch, seqLen);
  return checkTensor(indicesRule(batch, seqLen, c.num_kv_heads, specOut.slcCount, indices), indices);
}

std::array<void *, kForwardKernelParamCount> kernelParams(ForwardKernelArgs &a) {
  std::array<void *, kForwardKernelParamCount> p = {
      &a.q,          &a.k,         &a.v,          &a.idx,         &a.o,          &a.lse,
      &a.qs.batch,   &a.qs.token,  &a.qs.head,    &a.ks.batch,    &a.ks.token,   &a.ks.head,
      &a.vs.batch,   &a.vs.token,  &a.vs.head,    &a.idxs.batch,  &a.idxs.token, &a.idxs.head,
      &a.os.batch,   &a.os.token,  &a.os.head,    &a.lses.batch,  &a.lses.token, &a.lses.head,
      &a.seqLen,     &a.kvLen};
  return p;
}

} // namespace nsajit::rt
