#include "Context.h"

#include "DiskCache.h"
#include "Log.h"

#include <cstdlib>
#include <cstring>
#include <vector>

nsajit_context::~nsajit_context() {
  kernels.reset(); // unloads modules while the context is alive
  if (workspaces && drv) {
    nsajit::rt::ScopedContext scope(*drv, cuContext);
    workspaces.reset();
  }
  if (retainedPrimary && drv)
    drv->cuDevicePrimaryCtxRelease(device);
}

namespace nsajit::rt {

namespace {

int attribute(const CudaDriver &drv, CUdevice dev, CUdevice_attribute attr, const char *name) {
  int v = 0;
  CUresult r = drv.cuDeviceGetAttribute(&v, attr, dev);
  if (r != CUDA_SUCCESS)
    throw Error(CudaDriver::statusFor(r), fmt::format("cuDeviceGetAttribute({}) failed: {}", name, drv.errorText(r)));
  return v;
}

bool envFlag(const char *name, bool dflt) {
  const char *e = std::getenv(name);
  if (!e || !*e)
    return dflt;
  return !(std::strcmp(e, "0") == 0 || std::strcmp(e, "off") == 0 || std::strcmp(e, "false") == 0);
}

} // namespace

std::unique_ptr<nsajit_context> createContext(int ordinal) {
  std::shared_ptr<const CudaDriver> drv = CudaDriver::get();
  int count = 0;
  CUresult r = drv->cuDeviceGetCount(&count);
  if (r != CUDA_SUCCESS)
    fail(NSAJIT_ERROR_NO_DEVICE, "no CUDA device: cuDeviceGetCount failed: {}", drv->errorText(r));
  if (count < 1)
    fail(NSAJIT_ERROR_NO_DEVICE, "no CUDA device: the driver ({}) reports 0 devices", drv->libraryPath());

  CUcontext current = nullptr;
  drv->check(drv->cuCtxGetCurrent(&current), "cuCtxGetCurrent");
  CUdevice currentDevice = -1;
  if (current && drv->cuCtxGetDevice(&currentDevice) != CUDA_SUCCESS)
    current = nullptr; // a destroyed or unusable context: ignore it
  if (ordinal < 0) {
    if (ordinal != -1)
      invalidArgument("device_ordinal = {} is out of range; allowed: -1 (the current context's device) or 0..{}",
                      ordinal, count - 1);
    ordinal = current ? static_cast<int>(currentDevice) : 0;
  }
  if (ordinal >= count)
    invalidArgument("device_ordinal = {} is out of range: this machine has {} CUDA device(s); allowed: -1 or 0..{}",
                    ordinal, count, count - 1);

  auto ctx = std::make_unique<nsajit_context>();
  ctx->drv = drv;
  drv->check(drv->cuDeviceGet(&ctx->device, ordinal), "cuDeviceGet");
  // Note: CUdevice is the ordinal for every driver we know; compare through cuDeviceGet anyway.
  if (current && currentDevice == ctx->device) {
    ctx->cuContext = current;
  } else {
    drv->check(drv->cuDevicePrimaryCtxRetain(&ctx->cuContext, ctx->device), "cuDevicePrimaryCtxRetain");
    ctx->retainedPrimary = true;
  }

  DeviceInfo &info = ctx->info;
  info.ordinal = ordinal;
  char name[256] = {};
  drv->check(drv->cuDeviceGetName(name, sizeof name - 1, ctx->device), "cuDeviceGetName");
  info.name = name;
  info.ccMajor = attribute(*drv, ctx->device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "COMPUTE_CAPABILITY_MAJOR");
  info.ccMinor = attribute(*drv, ctx->device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "COMPUTE_CAPABILITY_MINOR");
  info.smCount = attribute(*drv, ctx->device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "MULTIPROCESSOR_COUNT");
  info.sharedPerBlock =
      attribute(*drv, ctx->device, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, "MAX_SHARED_MEMORY_PER_BLOCK");
  info.sharedPerBlockOptin = attribute(*drv, ctx->device, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                                       "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN");
  if (info.sharedPerBlockOptin < info.sharedPerBlock)
    info.sharedPerBlockOptin = info.sharedPerBlock;
  info.pageableMemoryAccess =
      attribute(*drv, ctx->device, CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS, "PAGEABLE_MEMORY_ACCESS") != 0;
  ctx->checkPointers = envFlag("NSAJIT_CHECK_POINTERS", true);
  ctx->kernels = std::make_unique<KernelCache>(drv, ctx->cuContext, info);
  ctx->workspaces = std::make_unique<StreamWorkspaces>(*drv);
  const char *tuningEnv = std::getenv("NSAJIT_TUNING");
  ctx->useTuning = !(tuningEnv && (!std::strcmp(tuningEnv, "off") || !std::strcmp(tuningEnv, "0")));
  ctx->selectedTwoKernel = envFlag("NSAJIT_SELECTED_TWO_KERNEL", true);
  std::shared_ptr<DiskCache> disk = DiskCache::global();
  std::string dbPath;
  if (disk->mode() == DiskCache::Mode::ReadWrite || disk->mode() == DiskCache::Mode::ReadOnly)
    dbPath = disk->directory() + "/tuning/" + tuningFileStem(info.name, info.ccMajor, info.ccMinor) + ".tsv";
  ctx->tuning = std::make_shared<TuningDb>(dbPath);
  if (!ctx->tuning->warning().empty())
    logWarning(fmt::format("tuning database {}: {}", dbPath, ctx->tuning->warning()));
  return ctx;
}

Arch contextArch(const nsajit_context &ctx) {
  int forced = ctx.archOverride.load();
  if (forced)
    return archFromInt(forced);
  return chooseArch(ctx.info);
}

void setContextArch(nsajit_context &ctx, int arch) {
  if (arch == 0) {
    ctx.archOverride = 0;
    return;
  }
  Arch a = archFromInt(arch);
  const DeviceInfo &d = ctx.info;
  if (a == Arch::SM90a && !(d.ccMajor == 9 && d.ccMinor == 0))
    fail(NSAJIT_ERROR_UNSUPPORTED, "arch = 90 (sm_90a) needs a GPU of compute capability 9.0; GPU {} '{}' is {}.{}",
         d.ordinal, d.name, d.ccMajor, d.ccMinor);
  if (a == Arch::SM80 && d.ccMajor < 8)
    fail(NSAJIT_ERROR_UNSUPPORTED, "arch = 80 (sm_80) needs a GPU of compute capability 8.0 or newer; GPU {} '{}' is "
                                   "{}.{}",
         d.ordinal, d.name, d.ccMajor, d.ccMinor);
  ctx.archOverride = arch;
}

std::string describeDevice(const nsajit_context &ctx) {
  const DeviceInfo &d = ctx.info;
  std::string kernels;
  try {
    kernels = archName(contextArch(ctx));
    if (ctx.archOverride.load())
      kernels += ", forced";
  } catch (const Error &e) {
    kernels = fmt::format("unsupported: {}", e.what());
  }
  int dv = ctx.drv->driverVersion();
  return fmt::format("device {}: {}, compute capability {}.{} (kernels: {}), {} SMs, shared memory per CTA {} KiB "
                     "(opt-in {} KiB), driver CUDA {}.{} ({}), {} context",
                     d.ordinal, d.name, d.ccMajor, d.ccMinor, kernels, d.smCount, d.sharedPerBlock / 1024,
                     d.sharedPerBlockOptin / 1024, dv / 1000, dv % 1000 / 10, ctx.drv->libraryPath(),
                     ctx.retainedPrimary ? "primary" : "caller's current");
}

void checkDeviceSpans(const nsajit_context &ctx, const SpanList &spans) {
  const CudaDriver &drv = *ctx.drv;
  for (const TensorSpan &s : spans) {
    if (s.bytes == 0)
      continue;
    unsigned int memType = 0;
    CUresult r = drv.cuPointerGetAttribute(&memType, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, s.data);
    if (r == CUDA_ERROR_INVALID_VALUE) {
      if (ctx.info.pageableMemoryAccess)
        continue; // plain host memory is usable on this system (HMM/ATS)
      invalidArgument("{}.data = {:#x} is not memory the CUDA driver knows (host memory, a freed buffer, or a "
                      "pointer of another process?): pass device memory (set NSAJIT_CHECK_POINTERS=0 to skip this "
                      "check)",
                      s.name, s.data);
    }
    if (r != CUDA_SUCCESS)
      continue; // cannot tell: let the launch decide
    CUdeviceptr base = 0;
    size_t size = 0;
    if (drv.cuMemGetAddressRange(&base, &size, s.data) != CUDA_SUCCESS || size == 0)
      continue;
    std::uint64_t end = static_cast<std::uint64_t>(base) + size;
    if (s.data + s.bytes > end)
      invalidArgument("{} needs {} bytes from {:#x} (shape and strides), but its allocation [{:#x}, {:#x}) ends {} "
                      "bytes earlier: check the shape, strides and seq_len",
                      s.name, s.bytes, s.data, static_cast<std::uint64_t>(base), end, s.data + s.bytes - end);
  }
}

bool usesTuningEntries(const nsajit_context &ctx) { return ctx.useTuning && ctx.tuning && !ctx.tuning->empty(); }

std::optional<TileConfig> tunedTile(const nsajit_context &ctx, const KernelSpec &spec, int batch, int seqLen) {
  if (!usesTuningEntries(ctx))
    return std::nullopt;
  return ctx.tuning->lookup(tuningKey(spec), static_cast<std::int64_t>(batch) * seqLen);
}

std::optional<KernelSpec> selectedFirstKernel(const nsajit_context &ctx, const KernelSpec &spec) {
  if (!ctx.selectedTwoKernel)
    return std::nullopt;
  KernelSpec first = spec;
  first.tile = selectedFirstTile(spec); // none but for the selected sm_90a forward and dQ kernels
  if (!first.tile.warps)
    return std::nullopt;
  return first;
}

namespace {
PreparedLaunch prepareWithTile(const ForwardRequest &req, const nsajit_config &c, const TileConfig &t, Arch arch) {
  nsajit_config tc = c;
  tc.tile_warps = t.warps;
  tc.tile_tokens = t.tokensPerCta;
  tc.tile_kv_chunk = t.kvChunk;
  ForwardRequest r = req;
  r.config = &tc;
  return prepareForward(r, arch);
}
} // namespace

void launchForward(nsajit_context &ctx, const ForwardRequest &req, void *stream) {
  // Everything that needs no GPU first, against the context's architecture
  // (on a GPU nsajit cannot serve, report argument errors before that).
  const Arch arch = archAfterArgumentChecks(ctx, [&](Arch a) { prepareForward(req, a); });
  PreparedLaunch p = prepareForward(req, arch);
  const nsajit_config c = readConfig(req.config);
  std::optional<PreparedLaunch> first; // the two-kernel schedule's first kernel
  if (!c.tile_warps && !c.tile_tokens && !c.tile_kv_chunk) {
    if (std::optional<KernelSpec> s = selectedFirstKernel(ctx, p.spec))
      first = prepareWithTile(req, c, s->tile, arch);
    if (std::optional<TileConfig> tuned = tunedTile(ctx, p.spec, req.batch, req.seqLen))
      p = prepareWithTile(req, c, *tuned, arch);
  }
  const LoadedKernel &k = ctx.kernels->get(p.spec);
  const LoadedKernel *firstKernel = first ? &ctx.kernels->get(first->spec) : nullptr;
  ScopedContext scope(*ctx.drv, ctx.cuContext);
  if (ctx.checkPointers)
    checkDeviceSpans(ctx, p.spans); // cuMemGetAddressRange wants a current context
  if (first) {
    // [B, H, T] bytes, written by the first kernel before the second reads them.
    const std::uint64_t bytes =
        std::uint64_t(req.batch) * std::uint64_t(std::max(c.num_kv_heads, 1)) * std::uint64_t(req.seqLen);
    first->args.tokenDone = p.args.tokenDone = ctx.workspaces->get(stream, bytes);
    auto firstParams = kernelParams(first->args);
    launchKernel(ctx, *firstKernel, first->grid, first->threads, first->sharedBytes, firstParams.data(), stream);
  }
  auto params = kernelParams(p.args);
  launchKernel(ctx, k, p.grid, p.threads, p.sharedBytes, params.data(), stream);
}

void launchKernel(const nsajit_context &ctx, const LoadedKernel &kernel, const std::array<unsigned, 3> &grid,
                  unsigned threads, unsigned sharedBytes, void **params, void *stream, const char *note) {
  const CudaDriver &drv = *ctx.drv;
  CUresult r = drv.cuLaunchKernel(kernel.function, grid[0], grid[1], grid[2], threads, 1, 1, sharedBytes,
                                  static_cast<CUstream>(stream), params, nullptr);
  if (r != CUDA_SUCCESS)
    throw Error(CudaDriver::statusFor(r),
                fmt::format("cuLaunchKernel({}, grid ({}, {}, {}), block {}, {} bytes of shared memory) failed: {}{}",
                            kernel.spec.kernelName(), grid[0], grid[1], grid[2], threads, sharedBytes,
                            drv.errorText(r), note));
}

void checkIndices(nsajit_context &ctx, const nsajit_config *config, int batch, int seqLen,
                  const nsajit_tensor *indices, void *stream) {
  KernelSpec spec;
  TensorSpan span = checkIndicesView(config, batch, seqLen, indices, spec);
  const nsajit_config c = readConfig(config);
  SpanList spans;
  spans.add(span);
  const CudaDriver &drv = *ctx.drv;
  ScopedContext scope(drv, ctx.cuContext);
  if (ctx.checkPointers)
    checkDeviceSpans(ctx, spans);
  drv.check(drv.cuStreamSynchronize(static_cast<CUstream>(stream)), "cuStreamSynchronize");
  std::vector<std::int32_t> host;
  try {
    host.resize(span.bytes / 4);
  } catch (const std::bad_alloc &) {
    fail(NSAJIT_ERROR_OUT_OF_MEMORY, "cannot allocate {} bytes of host memory to check the indices", span.bytes);
  }
  drv.check(drv.cuMemcpyDtoH(host.data(), static_cast<CUdeviceptr>(span.data), span.bytes), "cuMemcpyDtoH(indices)");
  const std::int64_t n = spec.slcCount, lsel = spec.slcBlock;
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t t = 0; t < seqLen; ++t)
      for (std::int64_t h = 0; h < c.num_kv_heads; ++h) {
        std::int64_t base = (batch > 1 ? b * indices->stride_batch : 0) + (seqLen > 1 ? t * indices->stride_token : 0) +
                            (c.num_kv_heads > 1 ? h * indices->stride_head : 0);
        for (std::int64_t i = 0; i < n; ++i) {
          std::int64_t j = host[static_cast<std::size_t>(base + i)];
          if (j == -1 || (j >= 0 && j * lsel <= t))
            continue;
          invalidArgument("indices[b={}, t={}, h={}, {}] = {}: {}; allowed: -1 (no block) or a block j >= 0 with "
                          "j * l' <= t (l' = {})",
                          b, t, h, i, j,
                          j < 0 ? std::string("negative") : fmt::format("block {} starts at token {} > t", j, j * lsel),
                          lsel);
        }
      }
}

} // namespace nsajit::rt
