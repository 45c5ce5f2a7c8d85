#include "Compress.h"

#include "Context.h"

namespace nsajit::rt {

KernelSpec poolSpec(const nsajit_config *config, int dim, bool weighted, Arch arch, KernelPass pass) {
  nsajit_config c = readConfig(config);
  if (dim != 64 && dim != 128 && dim != 192 && dim != 256)
    fail(NSAJIT_ERROR_UNSUPPORTED, "dim = {} is not supported; allowed: 64, 128, 192, 256", dim);
  c.head_dim_qk = c.head_dim_v = dim; // the pooled tensor's head dim
  // Pooling uses neither the group nor the scale: fix them, so one kernel serves every G.
  c.group = 1;
  c.scale = 0.0f;
  KernelSpec s = specFromConfig(&c, Branch::Compressed, arch, pass);
  s.cmpWeighted = weighted;
  return withDefaultTiles(s);
}

namespace {

KernelSpec poolSpec(const CompressRequest &req, Arch arch, KernelPass pass) {
  return rt::poolSpec(req.config, req.dim, req.weights != 0, arch, pass);
}

void checkWeights(std::uint64_t ptr, const char *name) {
  if (ptr % 4 != 0)
    invalidArgument("{} = {:#x} is not 4-byte aligned: it must point to l float32 values on the device", name, ptr);
}

} // namespace

PreparedCompress prepareCompress(const CompressRequest &req, Arch arch, bool backward) {
  PreparedCompress p;
  KernelSpec first = poolSpec(req, arch, backward ? KernelPass::CompressBackward : KernelPass::Compress);
  const ProblemShape ps = problemShape(req.config, first, req.batch, req.seqLen);
  checkWeights(req.weights, "weights");
  SpanList &sp = p.spans;
  sp.add(checkHalfTensor(ps, "x", "[B, T, H, dim]", false, ps.T, ps.H, req.dim, req.x));
  CompressKernelArgs &a = p.args;
  a.x = req.x->data;
  a.xs = stridesOf(req.x);
  a.w = req.weights;
  a.seqLen = req.seqLen;
  a.cmpLen = static_cast<std::int32_t>(ps.Tkv);
  a.batch = req.batch;
  a.heads = static_cast<std::int32_t>(ps.H);
  if (!backward) {
    sp.add(checkHalfTensor(ps, "out", "[B, Tc, H, dim]", true, ps.Tkv, ps.H, req.dim, req.out));
    a.y = req.out->data;
    a.ys = stridesOf(req.out);
    LaunchDims d;
    d.spec = first;
    d.grid = {static_cast<unsigned>(ps.Tkv), static_cast<unsigned>(ps.H), static_cast<unsigned>(ps.B)};
    d.threads = static_cast<unsigned>(threadsPerCta(first));
    d.sharedBytes = static_cast<unsigned>(sharedMemoryBytes(first));
    if (ps.Tkv > 0) p.kernels.push_back(d); // T < l: nothing to pool
  } else {
    sp.add(checkHalfTensor(ps, "dout", "[B, Tc, H, dim]", false, ps.Tkv, ps.H, req.dim, req.dout));
    sp.add(checkHalfTensor(ps, "dx", "[B, T, H, dim]", true, ps.T, ps.H, req.dim, req.dx));
    if (req.weights && !req.dweights)
      invalidArgument("dweights is 0 but weights is given: pass dweights, l float32 values on the device that "
                      "receive the gradient of the pooling weights");
    if (!req.weights && req.dweights)
      invalidArgument("dweights is given but weights is 0: mean pooling has no weights to differentiate");
    checkWeights(req.dweights, "dweights");
    a.dy = req.dout->data;
    a.dys = stridesOf(req.dout);
    a.dx = req.dx->data;
    a.dxs = stridesOf(req.dx);
    a.dw = req.dweights;
    LaunchDims d;
    d.spec = first;
    d.grid = {static_cast<unsigned>(ps.T), static_cast<unsigned>(ps.H), static_cast<unsigned>(ps.B)};
    d.threads = static_cast<unsigned>(threadsPerCta(first));
    d.sharedBytes = static_cast<unsigned>(sharedMemoryBytes(first));
    p.kernels.push_back(d);
    if (req.weights) {
      LaunchDims w;
      w.spec = poolSpec(req, arch, KernelPass::CompressWeightGrad);
      w.grid = {static_cast<unsigned>(w.spec.cmpBlock), 1, 1};
      w.threads = static_cast<unsigned>(threadsPerCta(w.spec));
      w.sharedBytes = static_cast<unsigned>(sharedMemoryBytes(w.spec));
      p.kernels.push_back(w);
    }
  }
  checkNoOverlap(sp);
  return p;
}

std::array<void *, kCompressKernelParamCount> kernelParams(CompressKernelArgs &a) {
  return {&a.x,        &a.y,         &a.dy,        &a.dx,         &a.w,         &a.dw,
          &a.xs.batch, &a.xs.token,  &a.xs.head,   &a.ys.batch,   &a.ys.token,  &a.ys.head,
          &a.dys.batch, &a.dys.token, &a.dys.head, &a.dxs.batch,  &a.dxs.token, &a.dxs.head,
          &a.seqLen,   &a.cmpLen,    &a.batch,     &a.heads};
}

void launchCompress(nsajit_context &ctx, const CompressRequest &req, bool backward, void *stream) {
  const Arch arch = archAfterArgumentChecks(ctx, [&](Arch a) { prepareCompress(req, a, backward); });
  PreparedCompress p = prepareCompress(req, arch, backward);
  std::vector<const LoadedKernel *> kernels;
  for (const LaunchDims &d : p.kernels) kernels.push_back(&ctx.kernels->get(d.spec));
  auto params = kernelParams(p.args);
  ScopedContext scope(*ctx.drv, ctx.cuContext);
  if (ctx.checkPointers)
    checkDeviceSpans(ctx, p.spans);
  for (std::size_t i = 0; i < p.kernels.size(); ++i)
    launchKernel(ctx, *kernels[i], p.kernels[i].grid, p.kernels[i].threads, p.kernels[i].sharedBytes, params.data(),
                 stream, i == 0 ? "" : " (the pooling backward kernel was launched)");
}

} // namespace nsajit::rt
