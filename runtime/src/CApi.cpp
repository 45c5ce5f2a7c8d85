// The C API: argument checks, exception-to-status translation and the
// thread-local last error. Every exported function is here.
#include "Backward.h"
#include "TopN.h"
#include "Combine.h"
#include "Compress.h"
#include "Context.h"
#include "DiskCache.h"
#include "KernelCache.h"
#include "Ptxas.h"
#include "Prepare.h"
#include "Tuner.h"
#include "Log.h"
#include "Validate.h"

#include <cstdio>
#include <cstring>
#include <new>

using namespace nsajit;
using namespace nsajit::rt;

static_assert(sizeof(nsajit_config) == 68, "nsajit_config layout is part of the ABI");
static_assert(sizeof(nsajit_tensor) == 32, "nsajit_tensor layout is part of the ABI");
static_assert(sizeof(nsajit_tune_result) == 568, "nsajit_tune_result layout is part of the ABI");
static_assert(sizeof(nsajit_kernel_pass) == sizeof(int), "nsajit_kernel_pass is passed as an int");
static_assert(static_cast<int>(KernelPass::BackwardDKDV) == NSAJIT_PASS_BACKWARD_DKDV, "pass values match");

namespace {

thread_local std::string tlsLastError;

template <typename F>
nsajit_status guarded(F &&f) noexcept {
  try {
    f();
    tlsLastError.clear();
    return NSAJIT_OK;
  } catch (const Error &e) {
    tlsLastError = e.what();
    return e.status();
  } catch (const std::bad_alloc &) {
    tlsLastError = "out of host memory";
    return NSAJIT_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception &e) {
    tlsLastError = fmt::format("internal error: {}", e.what());
    return NSAJIT_ERROR_INTERNAL;
  } catch (...) {
    tlsLastError = "internal error: unknown exception";
    return NSAJIT_ERROR_INTERNAL;
  }
}

nsajit_context &requireContext(nsajit_context *ctx) {
  if (!ctx)
    invalidArgument("ctx is NULL: create a context with nsajit_context_create()");
  return *ctx;
}

// Copies s (with its NUL) into buf; a buffer that is too small is an error
// after writing as much as fits.
void copyOut(const std::string &s, char *buf, std::size_t len, const char *what) {
  if (!buf || len == 0)
    invalidArgument("buf is NULL or len is 0: {} needs {} bytes", what, s.size() + 1);
  std::size_t n = std::min(s.size(), len - 1);
  std::memcpy(buf, s.data(), n);
  buf[n] = '\0';
  if (s.size() + 1 > len)
    invalidArgument("buf of {} bytes is too small for {}: {} bytes needed", len, what, s.size() + 1);
}

void compileInContext(nsajit_context *ctx, const nsajit_config *config, int branch, int pass, const char **ptx_out) {
  nsajit_context &c = requireContext(ctx);
  if (!ptx_out)
    invalidArgument("ptx_out is NULL: pass the address of a const char* to receive the PTX");
  *ptx_out = nullptr;
  Branch b = branchFromC(branch);
  KernelPass p = passFromC(pass);
  KernelSpec spec = specFromConfig(config, b, contextArch(c), p);
  *ptx_out = c.kernels->ptxOf(spec)->c_str(); // kept alive by the process-wide PTX cache
}

void compileOffline(const nsajit_config *config, int branch, int pass, int arch, char *buf, std::size_t buf_len,
                    std::size_t *ptx_len) {
  Branch b = branchFromC(branch);
  KernelPass p = passFromC(pass);
  KernelSpec spec = p == KernelPass::Combine ? combineSpec(config, archFromInt(arch)) : specFromConfig(config, b, archFromInt(arch), p);
  std::shared_ptr<const std::string> ptx = PtxCache::global().get(spec, cacheKey(spec, "offline"), nullptr);
  if (ptx_len)
    *ptx_len = ptx->size();
  if (!buf && buf_len == 0)
    return; // size query
  copyOut(*ptx, buf, buf_len, "the PTX");
}

void queryKernel(nsajit_context *ctx, const nsajit_config *config, int branch, int pass, int arch,
                 nsajit_kernel_info *info) {
  if (!info)
    invalidArgument("info is NULL: pass the address of an nsajit_kernel_info");
  if (info->struct_size < sizeof(nsajit_kernel_info))
    invalidArgument("info->struct_size = {}; set it to sizeof(nsajit_kernel_info) = {}", info->struct_size,
                    sizeof(nsajit_kernel_info));
  Branch b = branchFromC(branch);
  KernelPass p = passFromC(pass);
  Arch a = ctx ? contextArch(*ctx) : archFromInt(arch);
  KernelSpec spec = p == KernelPass::Combine ? combineSpec(config, a) : specFromConfig(config, b, a, p);
  nsajit_kernel_info r{};
  r.struct_size = sizeof r;
  r.arch = static_cast<int32_t>(spec.arch);
  r.threads_per_cta = threadsPerCta(spec);
  r.shared_memory_bytes = sharedMemoryBytes(spec);
  r.tile_warps = spec.tile.warps;
  r.tile_tokens = spec.tile.tokensPerCta;
  r.tile_kv_chunk = spec.tile.kvChunk;
  r.num_regs = -1;
  r.local_bytes = -1;
  if (ctx) {
    const LoadedKernel &k = ctx->kernels->get(spec);
    r.num_regs = k.numRegs;
    r.local_bytes = k.localBytes;
  }
  std::snprintf(r.kernel_name, sizeof r.kernel_name, "%s", spec.kernelName().c_str());
  std::snprintf(r.spec, sizeof r.spec, "%s", spec.str().c_str());
  *info = r;
}

BackwardRequest backwardRequest(Branch branch, const nsajit_config *config, int batch, int seqLen,
                                const nsajit_tensor *q, const nsajit_tensor *k, const nsajit_tensor *v,
                                const nsajit_tensor *indices, const nsajit_tensor *o, const nsajit_tensor *lse,
                                const nsajit_tensor *dout, const nsajit_tensor *gate, const nsajit_tensor *delta,
                                const nsajit_tensor *dq, const nsajit_tensor *dk, const nsajit_tensor *dv,
                                const nsajit_tensor *dgate) {
  BackwardRequest r;
  r.branch = branch;
  r.config = config;
  r.batch = batch;
  r.seqLen = seqLen;
  r.q = q;
  r.k = k;
  r.v = v;
  r.indices = indices;
  r.o = o;
  r.lse = lse;
  r.dout = dout;
  r.gate = gate;
  r.delta = delta;
  r.dq = dq;
  r.dk = dk;
  r.dv = dv;
  r.dgate = dgate;
  return r;
}

// The request of one forward call (indices: selected branch only).
ForwardRequest forwardRequest(Branch branch, const nsajit_config *config, int batch, int seqLen, const nsajit_tensor *q,
                              const nsajit_tensor *k, const nsajit_tensor *v, const nsajit_tensor *indices,
                              const nsajit_tensor *out, const nsajit_tensor *lse) {
  ForwardRequest req;
  req.branch = branch;
  req.config = config;
  req.batch = batch;
  req.seqLen = seqLen;
  req.q = q;
  req.k = k;
  req.v = v;
  req.indices = indices;
  req.out = out;
  req.lse = lse;
  return req;
}

} // namespace

extern "C" {

NSAJIT_API const char *nsajit_last_error(void) { return tlsLastError.c_str(); }

NSAJIT_API const char *nsajit_status_string(nsajit_status status) {
  switch (status) {
  case NSAJIT_OK: return "NSAJIT_OK";
  case NSAJIT_ERROR_INVALID_ARGUMENT: return "NSAJIT_ERROR_INVALID_ARGUMENT";
  case NSAJIT_ERROR_UNSUPPORTED: return "NSAJIT_ERROR_UNSUPPORTED";
  case NSAJIT_ERROR_NO_DEVICE: return "NSAJIT_ERROR_NO_DEVICE";
  case NSAJIT_ERROR_DRIVER_ERROR: return "NSAJIT_ERROR_DRIVER_ERROR";
  case NSAJIT_ERROR_COMPILE_ERROR: return "NSAJIT_ERROR_COMPILE_ERROR";
  case NSAJIT_ERROR_OUT_OF_MEMORY: return "NSAJIT_ERROR_OUT_OF_MEMORY";
  case NSAJIT_ERROR_INTERNAL: return "NSAJIT_ERROR_INTERNAL";
  }
  return "NSAJIT_STATUS_UNKNOWN";
}

NSAJIT_API const char *nsajit_version(void) { return NSAJIT_VERSION_STRING; }

NSAJIT_API const char *nsajit_compiler_version(void) { return compilerVersionString().c_str(); }

NSAJIT_API uint32_t nsajit_abi_version(void) { return NSAJIT_ABI_VERSION; }

NSAJIT_API nsajit_status nsajit_set_log_callback(nsajit_log_fn fn, void *user_data) {
  return guarded([&] { setLogCallback(fn, user_data); });
}

NSAJIT_API nsajit_status nsajit_config_init(nsajit_config *config) {
  return guarded([&] {
    if (!config)
      invalidArgument("config is NULL: pass the address of an nsajit_config to fill");
    *config = defaultConfig();
  });
}

NSAJIT_API nsajit_status nsajit_context_create(nsajit_context **out, int device_ordinal) {
  return guarded([&] {
    if (!out)
      invalidArgument("out is NULL: pass the address of an nsajit_context* to receive the context");
    *out = nullptr;
    *out = createContext(device_ordinal).release();
  });
}

NSAJIT_API nsajit_status nsajit_context_destroy(nsajit_context *ctx) {
  return guarded([&] { delete ctx; });
}

NSAJIT_API nsajit_status nsajit_context_set_arch(nsajit_context *ctx, int arch) {
  return guarded([&] { setContextArch(requireContext(ctx), arch); });
}

NSAJIT_API nsajit_status nsajit_context_set_backward_split(nsajit_context *ctx, int tokens) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    if (tokens < 0)
      invalidArgument("tokens = {}: pass 0 (automatic) or the most query tokens one dK/dV CTA should walk (>= 1)",
                      tokens);
    c.backwardSplitTokens.store(tokens);
  });
}

NSAJIT_API nsajit_status nsajit_context_set_selection_map_limit(nsajit_context *ctx, size_t bytes) {
  return guarded([&] { requireContext(ctx).selectionMapLimit.store(static_cast<std::uint64_t>(bytes)); });
}

NSAJIT_API nsajit_status nsajit_device_info(nsajit_context *ctx, char *buf, size_t len) {
  return guarded([&] { copyOut(describeDevice(requireContext(ctx)), buf, len, "the device description"); });
}

NSAJIT_API nsajit_status nsajit_compressed_forward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                   int seq_len, const nsajit_tensor *q, const nsajit_tensor *k_cmp,
                                                   const nsajit_tensor *v_cmp, const nsajit_tensor *out,
                                                   const nsajit_tensor *lse, void *stream) {
  return guarded([&] {
    launchForward(requireContext(ctx), forwardRequest(Branch::Compressed, config, batch, seq_len, q, k_cmp, v_cmp, nullptr, out, lse),
                  stream);
  });
}

NSAJIT_API nsajit_status nsajit_selected_forward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                 int seq_len, const nsajit_tensor *q, const nsajit_tensor *k,
                                                 const nsajit_tensor *v, const nsajit_tensor *indices,
                                                 const nsajit_tensor *out, const nsajit_tensor *lse, void *stream) {
  return guarded([&] {
    launchForward(requireContext(ctx), forwardRequest(Branch::Selected, config, batch, seq_len, q, k, v, indices, out, lse),
                  stream);
  });
}

NSAJIT_API nsajit_status nsajit_window_forward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                               int seq_len, const nsajit_tensor *q, const nsajit_tensor *k,
                                               const nsajit_tensor *v, const nsajit_tensor *out,
                                               const nsajit_tensor *lse, void *stream) {
  return guarded([&] {
    launchForward(requireContext(ctx), forwardRequest(Branch::Window, config, batch, seq_len, q, k, v, nullptr, out, lse),
                  stream);
  });
}

NSAJIT_API nsajit_status nsajit_check_indices(nsajit_context *ctx, const nsajit_config *config, int batch,
                                              int seq_len, const nsajit_tensor *indices, void *stream) {
  return guarded([&] { checkIndices(requireContext(ctx), config, batch, seq_len, indices, stream); });
}

NSAJIT_API nsajit_status nsajit_select_topn(nsajit_context *ctx, const nsajit_config *config, int batch,
                                            int seq_len, const nsajit_tensor *q, const nsajit_tensor *k_cmp,
                                            const nsajit_tensor *lse_cmp, const nsajit_tensor *indices,
                                            void *stream) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    launchTopN(c, TopNRequest{config, batch, seq_len, q, k_cmp, lse_cmp, indices}, stream);
  });
}

NSAJIT_API nsajit_status nsajit_compress_forward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                 int seq_len, int dim, const nsajit_tensor *x, uint64_t weights,
                                                 const nsajit_tensor *out, void *stream) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    CompressRequest r;
    r.config = config, r.batch = batch, r.seqLen = seq_len, r.dim = dim, r.x = x, r.weights = weights, r.out = out;
    launchCompress(c, r, /*backward=*/false, stream);
  });
}

NSAJIT_API nsajit_status nsajit_gated_combine(nsajit_context *ctx, const nsajit_config *config, int batch,
                                              int seq_len, const nsajit_tensor *o_cmp, const nsajit_tensor *g_cmp,
                                              const nsajit_tensor *o_slc, const nsajit_tensor *g_slc,
                                              const nsajit_tensor *o_swa, const nsajit_tensor *g_swa,
                                              const nsajit_tensor *out, void *stream) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    CombineRequest r;
    r.config = config, r.batch = batch, r.seqLen = seq_len;
    r.o[0] = o_cmp, r.o[1] = o_slc, r.o[2] = o_swa;
    r.gate[0] = g_cmp, r.gate[1] = g_slc, r.gate[2] = g_swa;
    r.out = out;
    launchCombine(c, r, stream);
  });
}

NSAJIT_API nsajit_status nsajit_compress_backward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                  int seq_len, int dim, const nsajit_tensor *x, uint64_t weights,
                                                  const nsajit_tensor *dout, const nsajit_tensor *dx,
                                                  uint64_t dweights, void *stream) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    CompressRequest r;
    r.config = config, r.batch = batch, r.seqLen = seq_len, r.dim = dim, r.x = x, r.weights = weights;
    r.dout = dout, r.dx = dx, r.dweights = dweights;
    launchCompress(c, r, /*backward=*/true, stream);
  });
}

NSAJIT_API nsajit_status nsajit_compressed_backward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                    int seq_len, const nsajit_tensor *q, const nsajit_tensor *k_cmp,
                                                    const nsajit_tensor *v_cmp, const nsajit_tensor *o,
                                                    const nsajit_tensor *lse, const nsajit_tensor *dout,
                                                    const nsajit_tensor *gate, const nsajit_tensor *delta,
                                                    const nsajit_tensor *dq, const nsajit_tensor *dk,
                                                    const nsajit_tensor *dv, const nsajit_tensor *dgate, void *stream) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    launchBackward(c,
                   backwardRequest(Branch::Compressed, config, batch, seq_len, q, k_cmp, v_cmp, nullptr, o, lse, dout,
                                   gate, delta, dq, dk, dv, dgate),
                   stream);
  });
}

NSAJIT_API nsajit_status nsajit_selected_backward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                  int seq_len, const nsajit_tensor *q, const nsajit_tensor *k,
                                                  const nsajit_tensor *v, const nsajit_tensor *indices,
                                                  const nsajit_tensor *o, const nsajit_tensor *lse,
                                                  const nsajit_tensor *dout, const nsajit_tensor *gate,
                                                  const nsajit_tensor *delta, const nsajit_tensor *dq,
                                                  const nsajit_tensor *dk, const nsajit_tensor *dv,
                                                  const nsajit_tensor *dgate, void *stream) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    launchBackward(c,
                   backwardRequest(Branch::Selected, config, batch, seq_len, q, k, v, indices, o, lse, dout, gate,
                                   delta, dq, dk, dv, dgate),
                   stream);
  });
}

NSAJIT_API nsajit_status nsajit_window_backward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                int seq_len, const nsajit_tensor *q, const nsajit_tensor *k,
                                                const nsajit_tensor *v, const nsajit_tensor *o,
                                                const nsajit_tensor *lse, const nsajit_tensor *dout,
                                                const nsajit_tensor *gate, const nsajit_tensor *delta,
                                                const nsajit_tensor *dq, const nsajit_tensor *dk,
                                                const nsajit_tensor *dv, const nsajit_tensor *dgate, void *stream) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    launchBackward(c,
                   backwardRequest(Branch::Window, config, batch, seq_len, q, k, v, nullptr, o, lse, dout, gate,
                                   delta, dq, dk, dv, dgate),
                   stream);
  });
}

NSAJIT_API nsajit_status nsajit_compile(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                        const char **ptx_out) {
  return guarded([&] { compileInContext(ctx, config, branch, NSAJIT_PASS_FORWARD, ptx_out); });
}

NSAJIT_API nsajit_status nsajit_compile2(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                         nsajit_kernel_pass pass, const char **ptx_out) {
  return guarded([&] { compileInContext(ctx, config, branch, pass, ptx_out); });
}

NSAJIT_API nsajit_status nsajit_compile_ptx(const nsajit_config *config, nsajit_branch branch, int arch, char *buf,
                                            size_t buf_len, size_t *ptx_len) {
  return guarded([&] { compileOffline(config, branch, NSAJIT_PASS_FORWARD, arch, buf, buf_len, ptx_len); });
}

NSAJIT_API nsajit_status nsajit_compile_ptx2(const nsajit_config *config, nsajit_branch branch,
                                             nsajit_kernel_pass pass, int arch, char *buf, size_t buf_len,
                                             size_t *ptx_len) {
  return guarded([&] { compileOffline(config, branch, pass, arch, buf, buf_len, ptx_len); });
}

NSAJIT_API nsajit_status nsajit_kernel_query(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                             int arch, nsajit_kernel_info *info) {
  return guarded([&] { queryKernel(ctx, config, branch, NSAJIT_PASS_FORWARD, arch, info); });
}

NSAJIT_API nsajit_status nsajit_kernel_query2(nsajit_context *ctx, const nsajit_config *config,
                                              nsajit_branch branch, nsajit_kernel_pass pass, int arch,
                                              nsajit_kernel_info *info) {
  return guarded([&] { queryKernel(ctx, config, branch, pass, arch, info); });
}

NSAJIT_API nsajit_status nsajit_cache_stats(nsajit_context *ctx, nsajit_cache_counters *stats) {
  return guarded([&] {
    if (!stats)
      invalidArgument("stats is NULL: pass the address of an nsajit_cache_counters");
    std::uint32_t size = stats->struct_size;
    if (size < sizeof(std::uint64_t) * 2)
      invalidArgument("stats->struct_size = {}; set it to sizeof(nsajit_cache_counters) = {}", size,
                      sizeof(nsajit_cache_counters));
    nsajit_cache_counters r{};
    (ctx ? ctx->kernels->counters() : processCounters()).fill(r);
    if (!ctx)
      r.disk_rejects = std::max<std::uint64_t>(r.disk_rejects, DiskCache::global()->rejects());
    r.struct_size = size;
    std::memcpy(stats, &r, std::min<std::size_t>(size, sizeof r));
  });
}

NSAJIT_API nsajit_status nsajit_cache_info(char *buf, size_t len) {
  return guarded([&] {
    std::shared_ptr<const Ptxas> ptxas = Ptxas::get();
    std::string assembler = ptxas ? fmt::format("ptxas {} ({})", ptxas->path(), ptxas->version())
                                  : std::string("the driver's JIT (no ptxas)");
    copyOut(DiskCache::global()->describe() + "; machine code: " + assembler, buf, len, "the cache description");
  });
}

NSAJIT_API nsajit_status nsajit_tune(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                     int batch, int seq_len, int repeats, nsajit_tune_progress_fn progress,
                                     void *user, nsajit_tune_result *result) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    if (!result)
      invalidArgument("result is NULL: pass the address of an nsajit_tune_result");
    if (result->struct_size < sizeof(nsajit_tune_result))
      invalidArgument("result->struct_size = {}; set it to sizeof(nsajit_tune_result) = {}", result->struct_size,
                      sizeof(nsajit_tune_result));
    TuneProgress report;
    if (progress)
      report = [&](int done, int total, const TileConfig &t, double ms) {
        std::string tile = fmt::format("w{} t{} c{}", t.warps, t.tokensPerCta, t.kvChunk);
        progress(done, total, tile.c_str(), ms, user);
      };
    TuneResult r = tuneForward(c, config, branchFromC(branch), batch, seq_len, repeats, report);
    nsajit_tune_result out{};
    out.struct_size = sizeof out;
    out.tile_warps = r.best.warps;
    out.tile_tokens = r.best.tokensPerCta;
    out.tile_kv_chunk = r.best.kvChunk;
    out.best_ms = r.bestMs;
    out.default_warps = r.defaults.warps;
    out.default_tokens = r.defaults.tokensPerCta;
    out.default_kv_chunk = r.defaults.kvChunk;
    out.default_ms = r.defaultMs;
    out.candidates = r.candidates;
    out.failed = r.failed;
    std::snprintf(out.database, sizeof out.database, "%s", r.database.c_str());
    *result = out;
  });
}

NSAJIT_API nsajit_status nsajit_tuned_tile(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                           int batch, int seq_len, int32_t *warps, int32_t *tokens,
                                           int32_t *kv_chunk, int *tuned) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    if (!warps || !tokens || !kv_chunk || !tuned)
      invalidArgument("warps, tokens, kv_chunk and tuned must not be NULL");
    if (batch < 1 || seq_len < 1)
      invalidArgument("batch = {}, seq_len = {}: both must be >= 1", batch, seq_len);
    nsajit_config cfg = readConfig(config);
    cfg.tile_warps = cfg.tile_tokens = cfg.tile_kv_chunk = 0;
    KernelSpec spec = specFromConfig(&cfg, branchFromC(branch), contextArch(c));
    std::optional<TileConfig> t = tunedTile(c, spec, batch, seq_len);
    const TileConfig &use = t ? *t : spec.tile;
    *warps = use.warps;
    *tokens = use.tokensPerCta;
    *kv_chunk = use.kvChunk;
    *tuned = t ? 1 : 0;
  });
}

NSAJIT_API nsajit_status nsajit_tune_backward(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                              int batch, int seq_len, int repeats, nsajit_tune_progress_fn progress,
                                              void *user, nsajit_tune_backward_result *result) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    if (!result)
      invalidArgument("result is NULL: pass the address of an nsajit_tune_backward_result");
    if (result->struct_size < sizeof(nsajit_tune_backward_result))
      invalidArgument("result->struct_size = {}; set it to sizeof(nsajit_tune_backward_result) = {}",
                      result->struct_size, sizeof(nsajit_tune_backward_result));
    BackwardTuneProgress report;
    if (progress)
      report = [&](int done, int total, int splitTokens, int splits, double ms) {
        std::string what = splitTokens ? fmt::format("split {} ({} CTAs a key chunk)", splitTokens, splits)
                                       : fmt::format("split auto ({} CTAs a key chunk)", splits);
        progress(done, total, what.c_str(), ms, user);
      };
    BackwardTuneResult r = tuneBackward(c, config, branchFromC(branch), batch, seq_len, repeats, report);
    nsajit_tune_backward_result out{};
    out.struct_size = sizeof out;
    out.split_tokens = r.bestSplitTokens;
    out.splits = r.bestSplits;
    out.best_ms = r.bestMs;
    out.default_splits = r.defaultSplits;
    out.default_ms = r.defaultMs;
    out.candidates = r.candidates;
    out.failed = r.failed;
    std::snprintf(out.database, sizeof out.database, "%s", r.database.c_str());
    *result = out;
  });
}

NSAJIT_API nsajit_status nsajit_tuned_backward_split(nsajit_context *ctx, const nsajit_config *config,
                                                     nsajit_branch branch, int batch, int seq_len,
                                                     int32_t *split_tokens, int *tuned) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    if (!split_tokens || !tuned)
      invalidArgument("split_tokens and tuned must not be NULL");
    if (batch < 1 || seq_len < 1)
      invalidArgument("batch = {}, seq_len = {}: both must be >= 1", batch, seq_len);
    nsajit_config cfg = readConfig(config);
    cfg.tile_warps = cfg.tile_tokens = cfg.tile_kv_chunk = 0;
    KernelSpec dkdv = specFromConfig(&cfg, branchFromC(branch), contextArch(c), KernelPass::BackwardDKDV);
    std::optional<int> t = tunedBackwardSplit(c, dkdv, batch, seq_len);
    *split_tokens = t ? *t : 0;
    *tuned = t ? 1 : 0;
  });
}

NSAJIT_API nsajit_status nsajit_prepare(nsajit_context *ctx, const nsajit_config *config, unsigned flags, int batch,
                                        int seq_len, nsajit_prepare_progress_fn progress, void *user,
                                        int *kernels_out) {
  return guarded([&] {
    nsajit_context &c = requireContext(ctx);
    if (kernels_out)
      *kernels_out = 0;
    if (batch < 0 || seq_len < 0)
      invalidArgument("batch = {}, seq_len = {}: both must be >= 0 (0: no size, default tiles)", batch, seq_len);
    std::vector<KernelSpec> specs = kernelsOfConfig(c, config, flags, batch, seq_len, contextArch(c));
    PrepareProgress report;
    if (progress)
      report = [&](int done, int total, const KernelSpec &spec, double seconds) {
        progress(done, total, spec.str().c_str(), seconds, user);
      };
    int n = prepareKernels(c, specs, 0, report);
    if (kernels_out)
      *kernels_out = n;
  });
}

} // extern "C"
