#include "Combine.h"

#include "Context.h"

#include <limits>

namespace nsajit::rt {

KernelSpec combineSpec(const nsajit_config *config, Arch arch) {
  nsajit_config c = readConfig(config);
  // The kernel reads the dtype and Dv only: fix the rest, so one kernel serves every configuration.
  c.head_dim_qk = c.head_dim_v;
  c.group = 1;
  c.scale = 0.0f;
  c.window = 1;
  c.tile_warps = c.tile_tokens = c.tile_kv_chunk = 0;
  return withDefaultTiles(specFromConfig(&c, Branch::Window, arch, KernelPass::Combine));
}

PreparedCombine prepareCombine(const CombineRequest &req, Arch arch) {
  PreparedCombine p;
  const KernelSpec spec = combineSpec(req.config, arch);
  // The tensor shapes are the configuration's (HQ = H G), whatever the spec fixed; its tile
  // overrides (the branches' kernels) do not concern this kernel.
  KernelSpec shape = spec;
  shape.group = readConfig(req.config).group;
  if (std::string err = validate(shape); !err.empty())
    fail(NSAJIT_ERROR_UNSUPPORTED, "config: {}", err);
  const ProblemShape ps = problemShape(req.config, shape, req.batch, req.seqLen);
  static const char *oNames[3] = {"o_cmp", "o_slc", "o_swa"}, *gNames[3] = {"g_cmp", "g_slc", "g_swa"};
  SpanList &sp = p.spans;
  for (int c = 0; c < 3; ++c) {
    sp.add(checkHalfTensor(ps, oNames[c], "[B, T, HQ, Dv]", false, ps.T, ps.HQ, ps.Dv, req.o[c]));
    if (req.gate[c])
      sp.add(checkRowTensor(ps, gNames[c], false, req.gate[c]));
  }
  sp.add(checkHalfTensor(ps, "out", "[B, T, HQ, Dv]", true, ps.T, ps.HQ, ps.Dv, req.out));
  // 16-byte vectors: every row must start 16-byte aligned.
  auto checkVectors = [](const char *name, const nsajit_tensor *t) {
    if (t->data % 16 != 0 || t->stride_batch % 8 != 0 || t->stride_token % 8 != 0 || t->stride_head % 8 != 0)
      invalidArgument("{} (data {:#x}, strides {}, {}, {} elements) is not 16-byte aligned per row: nsajit_gated_combine "
                      "reads and writes rows in 16-byte vectors (the data 16-byte aligned, strides multiples of 8)",
                      name, t->data, t->stride_batch, t->stride_token, t->stride_head);
  };
  for (int c = 0; c < 3; ++c)
    checkVectors(oNames[c], req.o[c]);
  checkVectors("out", req.out);
  checkNoOverlap(sp);

  CombineKernelArgs &a = p.args;
  a.oCmp = req.o[0]->data, a.oSlc = req.o[1]->data, a.oSwa = req.o[2]->data;
  a.gCmp = req.gate[0] ? req.gate[0]->data : 0;
  a.gSlc = req.gate[1] ? req.gate[1]->data : 0;
  a.gSwa = req.gate[2] ? req.gate[2]->data : 0;
  a.out = req.out->data;
  a.oCmps = stridesOf(req.o[0]), a.oSlcs = stridesOf(req.o[1]), a.oSwas = stridesOf(req.o[2]);
  a.gCmps = stridesOf(req.gate[0]), a.gSlcs = stridesOf(req.gate[1]), a.gSwas = stridesOf(req.gate[2]);
  a.outs = stridesOf(req.out);
  a.seqLen = req.seqLen;
  a.heads = static_cast<std::int32_t>(ps.HQ);
  a.batch = req.batch;

  p.kernel.spec = spec;
  p.kernel.threads = static_cast<unsigned>(threadsPerCta(spec));
  p.kernel.sharedBytes = 0;
  const std::int64_t vectors = ps.B * ps.T * ps.HQ * (ps.Dv / 8);
  const std::int64_t ctas = (vectors + p.kernel.threads - 1) / p.kernel.threads;
  if (ctas > std::numeric_limits<std::int32_t>::max())
    invalidArgument("batch x seq_len x heads = {} x {} x {} rows need {} CTAs; the limit is 2^31-1", ps.B, ps.T, ps.HQ,
                    ctas);
  p.kernel.grid = {static_cast<unsigned>(ctas), 1, 1};
  p.empty = vectors == 0;
  return p;
}

std::array<void *, kCombineKernelParamCount> kernelParams(CombineKernelArgs &a) {
  return {&a.oCmp,        &a.oSlc,        &a.oSwa,       &a.gCmp,        &a.gSlc,        &a.gSwa,
          &a.out,         &a.oCmps.batch, &a.oCmps.token, &a.oCmps.head, &a.oSlcs.batch, &a.oSlcs.token,
          &a.oSlcs.head,  &a.oSwas.batch, &a.oSwas.token, &a.oSwas.head, &a.gCmps.batch, &a.gCmps.token,
          &a.gCmps.head,  &a.gSlcs.batch, &a.gSlcs.token, &a.gSlcs.head, &a.gSwas.batch, &a.gSwas.token,
          &a.gSwas.head,  &a.outs.batch,  &a.outs.token,  &a.outs.head,  &a.seqLen,      &a.heads,
          &a.batch};
}

void launchCombine(nsajit_context &ctx, const CombineRequest &req, void *stream) {
  const Arch arch = archAfterArgumentChecks(ctx, [&](Arch a) { prepareCombine(req, a); });
  PreparedCombine p = prepareCombine(req, arch);
  const LoadedKernel &kernel = ctx.kernels->get(p.kernel.spec);
  auto params = kernelParams(p.args);
  ScopedContext scope(*ctx.drv, ctx.cuContext);
  if (ctx.checkPointers)
    checkDeviceSpans(ctx, p.spans);
  if (!p.empty)
    launchKernel(ctx, kernel, p.kernel.grid, p.kernel.threads, p.kernel.sharedBytes, params.data(), stream, "");
}

} // namespace nsajit::rt
