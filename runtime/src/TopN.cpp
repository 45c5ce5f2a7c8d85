#include "TopN.h"

#include "Context.h"

namespace nsajit::rt {

KernelSpec topNSpec(const nsajit_config *config, Arch arch) {
  // The top-n reads no values: one kernel serves every Dv (Dv = Dk keeps the spec valid).
  nsajit_config c = readConfig(config);
  c.head_dim_v = c.head_dim_qk;
  return specFromConfig(&c, Branch::Compressed, arch, KernelPass::TopN);
}

PreparedTopN prepareTopN(const TopNRequest &req, Arch arch) {
  PreparedTopN p;
  p.spec = topNSpec(req.config, arch);
  const ProblemShape ps = problemShape(req.config, p.spec, req.batch, req.seqLen);
  SpanList &sp = p.spans;
  sp.add(checkHalfTensor(ps, "q", "[B, T, HQ, Dk]", false, ps.T, ps.HQ, ps.Dk, req.q));
  sp.add(checkHalfTensor(ps, "k_cmp", "[B, Tc, H, Dk]", false, ps.Tkv, ps.H, ps.Dk, req.kCmp));
  sp.add(checkRowTensor(ps, "lse_cmp", false, req.lseCmp));
  ProblemShape withN = ps;
  withN.n = p.spec.slcCount;
  sp.add(checkIndicesTensor(withN, req.indices, /*output=*/true));
  checkNoOverlap(sp);

  TopNKernelArgs &a = p.args;
  a.q = req.q->data;
  a.kc = req.kCmp->data;
  a.lse = req.lseCmp->data;
  a.idx = req.indices->data;
  a.qs = stridesOf(req.q);
  a.kcs = stridesOf(req.kCmp);
  a.lses = stridesOf(req.lseCmp);
  a.idxs = stridesOf(req.indices);
  a.seqLen = req.seqLen;
  a.kvLen = static_cast<std::int32_t>(ps.Tkv);
  p.dims = launchDims(p.spec, ps);
  return p;
}

std::array<void *, kTopNKernelParamCount> kernelParams(TopNKernelArgs &a) {
  return {&a.q,          &a.kc,          &a.lse,         &a.idx,          &a.qs.batch,    &a.qs.token,
          &a.qs.head,    &a.kcs.batch,   &a.kcs.token,   &a.kcs.head,     &a.lses.batch,  &a.lses.token,
          &a.lses.head,  &a.idxs.batch,  &a.idxs.token,  &a.idxs.head,    &a.seqLen,      &a.kvLen};
}

void launchTopN(nsajit_context &ctx, const TopNRequest &req, void *stream) {
  const Arch arch = archAfterArgumentChecks(ctx, [&](Arch a) { prepareTopN(req, a); });
  PreparedTopN p = prepareTopN(req, arch);
  const LoadedKernel &k = ctx.kernels->get(p.spec);
  auto params = kernelParams(p.args);
  ScopedContext scope(*ctx.drv, ctx.cuContext);
  if (ctx.checkPointers)
    checkDeviceSpans(ctx, p.spans);
  launchKernel(ctx, k, p.dims.grid, p.dims.threads, p.dims.sharedBytes, params.data(), stream);
}

} // namespace nsajit::rt
