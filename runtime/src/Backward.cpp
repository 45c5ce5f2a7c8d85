#include "Backward.h"

#include "Context.h"

#include <algorithm>
#include <limits>

namespace nsajit::rt {

namespace {

constexpr KernelPass kPasses[kBackwardKernels] = {KernelPass::BackwardPreprocess, KernelPass::BackwardDQ,
                                                   KernelPass::BackwardDKDV};

// gate and dgate come together: dgate receives the gradient of the gate.
void checkGatePairing(const nsajit_tensor *gate, const nsajit_tensor *dgate) {
  if (gate && !dgate)
    invalidArgument("dgate is NULL but gate is given: pass dgate, a [B, T, HQ] float32 output that receives the "
                    "gradient of the gate (or pass gate = NULL for an ungated branch)");
  if (!gate && dgate)
    invalidArgument("dgate is given but gate is NULL: without a gate (all gates 1) there is no gate gradient and "
                    "dgate would not be written; pass dgate = NULL, or pass the gate");
}

} // namespace

int dkdvSplits(const KernelSpec &s, std::int64_t seqLen, int splitTokens, std::int64_t unsplitCtas, int smCount) {
  if (splitTokens < 0)
    invalidArgument("the backward split length is {}: pass 0 (automatic) or the most query tokens one dK/dV CTA "
                    "should walk (>= 1)",
                    splitTokens);
  // The longest walk: the tokens that can see the first key chunk.
  std::int64_t walk = seqLen;
  switch (s.branch) {
  case Branch::Compressed: walk = seqLen - (s.cmpBlock - 1); break;
  case Branch::Window: walk = std::min<std::int64_t>(seqLen, s.tile.kvChunk + s.window - 1); break;
  case Branch::Selected: break;
  }
  auto splitsOf = [&](std::int64_t segment) { return (walk + segment - 1) / segment; };
  const std::int64_t automatic = s.branch == Branch::Compressed ? kCompressedSplitTokens
                                 : s.branch == Branch::Selected  ? kSelectedSplitTokens
                                                                 : 2048;
  std::int64_t splits = 0;
  if (splitTokens == 0 && s.branch == Branch::Selected && unsplitCtas > 0) {
    // The initial block's walk (every token) in splits no longer than the
    // walks each resident CTA does on average: B H T n token-block pairs over
    // kSelectedDkdvCtasPerSm x SMs CTAs (rounded), with segments of at least
    // kSelectedMinSplitTokens. (The unsplit grid is a CTA per key chunk, KV
    // head and batch; the selected branch's keys are the sequence's.)
    const std::int64_t chunks = std::max<std::int64_t>(1, (seqLen + s.tile.kvChunk - 1) / s.tile.kvChunk);
    const std::int64_t lists = std::max<std::int64_t>(1, unsplitCtas / chunks) * s.slcCount; // B H n
    const std::int64_t resident = std::int64_t{kSelectedDkdvCtasPerSm} * (smCount > 0 ? smCount : kDefaultSmCount);
    splits = std::min((resident + lists / 2) / lists, splitsOf(kSelectedMinSplitTokens));
  } else {
    splits = splitsOf(splitTokens > 0 ? splitTokens : automatic);
  }
  // (Not the compressed walk: segment-major, many of its CTAs find no work.)
  if (splitTokens == 0 && s.branch == Branch::Window && unsplitCtas > 0)
    // Enough CTAs already (many heads or key chunks): longer segments, up to 8192 tokens.
    splits = std::max(splitsOf(8192), std::min(splits, (kDkdvTargetCtas + unsplitCtas - 1) / unsplitCtas));
  return static_cast<int>(std::clamp<std::int64_t>(splits, 1, kMaxDkdvSplits));
}

PreparedBackward prepareBackward(const BackwardRequest &req, Arch arch, const BackwardOptions &options) {
  PreparedBackward p;
  for (int i = 0; i < kBackwardKernels; ++i)
    p.kernels[static_cast<std::size_t>(i)].spec = specFromConfig(req.config, req.branch, arch, kPasses[i]);
  const ProblemShape ps = problemShape(req.config, p.kernels[0].spec, req.batch, req.seqLen);
  const bool slc = req.branch == Branch::Selected;
  const bool gated = req.gate != nullptr;

  SpanList &sp = p.spans;
  sp.add(checkHalfTensor(ps, "q", "[B, T, HQ, Dk]", false, ps.T, ps.HQ, ps.Dk, req.q));
  sp.add(checkHalfTensor(ps, ps.kName, ps.kShape, false, ps.Tkv, ps.H, ps.Dk, req.k));
  sp.add(checkHalfTensor(ps, ps.vName, ps.vShape, false, ps.Tkv, ps.H, ps.Dv, req.v));
  if (slc)
    sp.add(checkIndicesTensor(ps, req.indices));
  sp.add(checkHalfTensor(ps, "o", "[B, T, HQ, Dv]", false, ps.T, ps.HQ, ps.Dv, req.o));
  sp.add(checkRowTensor(ps, "lse", false, req.lse));
  sp.add(checkHalfTensor(ps, "dout", "[B, T, HQ, Dv]", false, ps.T, ps.HQ, ps.Dv, req.dout));
  if (gated)
    sp.add(checkRowTensor(ps, "gate", false, req.gate));
  sp.add(checkRowTensor(ps, "delta", true, req.delta));
  sp.add(checkHalfTensor(ps, "dq", "[B, T, HQ, Dk]", true, ps.T, ps.HQ, ps.Dk, req.dq));
  const bool cmp = req.branch == Branch::Compressed;
  sp.add(checkHalfTensor(ps, "dk", cmp ? "[B, Tc, H, Dk]" : "[B, T, H, Dk]", true, ps.Tkv, ps.H, ps.Dk, req.dk));
  sp.add(checkHalfTensor(ps, "dv", cmp ? "[B, Tc, H, Dv]" : "[B, T, H, Dv]", true, ps.Tkv, ps.H, ps.Dv, req.dv));
  checkGatePairing(req.gate, req.dgate);
  if (gated)
    sp.add(checkRowTensor(ps, "dgate", true, req.dgate));
  checkNoOverlap(sp);

  BackwardKernelArgs &a = p.args;
  a.q = req.q->data;
  a.k = req.k->data;
  a.v = req.v->data;
  a.idx = slc ? req.indices->data : 0;
  a.o = req.o->data;
  a.lse = req.lse->data;
  a.dout = req.dout->data;
  a.gate = gated ? req.gate->data : 0;
  a.delta = req.delta->data;
  a.dq = req.dq->data;
  a.dk = req.dk->data;
  a.dv = req.dv->data;
  a.dgate = gated ? req.dgate->data : 0;
  a.qs = stridesOf(req.q);
  a.ks = stridesOf(req.k);
  a.vs = stridesOf(req.v);
  a.idxs = slc ? stridesOf(req.indices) : TensorStrides3{};
  a.os = stridesOf(req.o);
  a.lses = stridesOf(req.lse);
  a.douts = stridesOf(req.dout);
  a.gates = gated ? stridesOf(req.gate) : TensorStrides3{};
  a.deltas = stridesOf(req.delta);
  a.dqs = stridesOf(req.dq);
  a.dks = stridesOf(req.dk);
  a.dvs = stridesOf(req.dv);
  a.dgates = gated ? stridesOf(req.dgate) : TensorStrides3{};
  a.seqLen = req.seqLen;
  a.kvLen = static_cast<std::int32_t>(ps.Tkv);

  for (LaunchDims &d : p.kernels)
    d = launchDims(d.spec, ps);
  LaunchDims &dkdv = p.kernels[2];
  p.dkdvSplits = dkdvSplits(dkdv.spec, ps.T, options.splitTokens,
                            std::int64_t{dkdv.grid[0]} * dkdv.grid[1] * dkdv.grid[2], options.smCount);
  std::uint64_t mapBytes = 0;
  if (slc) {
    const std::int64_t words = (ps.T + 31) / 32, blocks = (ps.Tkv + dkdv.spec.slcBlock - 1) / dkdv.spec.slcBlock;
    const std::uint64_t bytes =
        selectionMapBytes(static_cast<int>(ps.B), static_cast<int>(ps.H), static_cast<int>(blocks), static_cast<int>(words));
    if (bytes <= options.selectionMapLimit) {
      a.selectionMapWords = static_cast<std::int32_t>(words);
      mapBytes = bytes;
    }
  }
  p.workspaceBytes = p.workspaceZeroedBytes = mapBytes;
  if (p.dkdvSplits > 1) {
    const std::int64_t chunks = dkdv.grid[0];
    if (chunks * p.dkdvSplits > std::numeric_limits<std::int32_t>::max())
      invalidArgument("seq_len = {} needs {} x {} dK/dV CTAs along grid x; the limit is 2^31-1", ps.T, chunks,
                      p.dkdvSplits);
    dkdv.grid[0] = static_cast<unsigned>(chunks * p.dkdvSplits);
    const int B = static_cast<int>(ps.B), H = static_cast<int>(ps.H), n = static_cast<int>(chunks);
    p.workspaceBytes += dkdvWorkspaceBytes(B, H, n, dkdv.spec.tile.kvChunk, static_cast<int>(ps.Dk),
                                           static_cast<int>(ps.Dv));
    p.workspaceZeroedBytes += dkdvWorkspaceStateBytes(B, H, n);
  }
  if (options.dqFirst && slc && !readConfig(req.config).tile_tokens) {
    // [B, H, T] bytes after the rest (not zeroed: the first kernel writes every token's).
    p.dqFirst = launchDims(*options.dqFirst, ps);
    p.tokenDoneOffset = (p.workspaceBytes + 255) / 256 * 256;
    p.workspaceBytes = p.tokenDoneOffset + std::uint64_t(ps.B) * std::uint64_t(ps.H) * std::uint64_t(ps.T);
  }
  // Without keys (compressed branch, T < l) dq is all zeros (bwd_dq writes it)
  // and dk/dv are empty: there is no bwd_dkdv CTA to launch.
  p.numKernels = ps.Tkv > 0 ? kBackwardKernels : kBackwardKernels - 1;
  return p;
}

std::array<void *, kBackwardKernelParamCount> kernelParams(BackwardKernelArgs &a) {
  std::array<void *, kBackwardKernelParamCount> p = {
      &a.q,           &a.k,           &a.v,           &a.idx,         &a.o,           &a.lse,
      &a.dout,        &a.gate,        &a.delta,       &a.dq,          &a.dk,          &a.dv,
      &a.dgate,       &a.workspace,   &a.tokenDone,
      &a.qs.batch,    &a.qs.token,    &a.qs.head,     &a.ks.batch,    &a.ks.token,    &a.ks.head,
      &a.vs.batch,    &a.vs.token,    &a.vs.head,     &a.idxs.batch,  &a.idxs.token,  &a.idxs.head,
      &a.os.batch,    &a.os.token,    &a.os.head,     &a.lses.batch,  &a.lses.token,  &a.lses.head,
      &a.douts.batch, &a.douts.token, &a.douts.head,  &a.gates.batch, &a.gates.token, &a.gates.head,
      &a.deltas.batch, &a.deltas.token, &a.deltas.head, &a.dqs.batch, &a.dqs.token,   &a.dqs.head,
      &a.dks.batch,   &a.dks.token,   &a.dks.head,    &a.dvs.batch,   &a.dvs.token,   &a.dvs.head,
      &a.dgates.batch, &a.dgates.token, &a.dgates.head,
      &a.seqLen,      &a.kvLen,       &a.selectionMapWords};
  return p;
}

std::optional<int> tunedBackwardSplit(const nsajit_context &ctx, const KernelSpec &dkdv, int batch, int seqLen) {
  if (!usesTuningEntries(ctx))
    return std::nullopt;
  std::optional<TuningEntry> e = ctx.tuning->lookupEntry(tuningKey(dkdv), static_cast<std::int64_t>(batch) * seqLen);
  if (!e)
    return std::nullopt;
  return e->splitTokens;
}

void launchBackward(nsajit_context &ctx, const BackwardRequest &req, void *stream, int splitTokensOverride) {
  BackwardOptions options;
  options.splitTokens = splitTokensOverride >= 0 ? splitTokensOverride : ctx.backwardSplitTokens.load();
  options.selectionMapLimit = ctx.selectionMapLimit.load();
  options.smCount = ctx.info.smCount;
  const Arch arch = archAfterArgumentChecks(ctx, [&](Arch a) { prepareBackward(req, a, options); });
  // (The dK/dV spec is built only when there are entries to look it up in.)
  if (splitTokensOverride < 0 && options.splitTokens == 0 && usesTuningEntries(ctx))
    if (std::optional<int> tuned =
            tunedBackwardSplit(ctx, specFromConfig(req.config, req.branch, arch, KernelPass::BackwardDKDV), req.batch,
                               req.seqLen))
      options.splitTokens = *tuned;
  if (req.branch == Branch::Selected)
    options.dqFirst = selectedFirstKernel(ctx, specFromConfig(req.config, req.branch, arch, KernelPass::BackwardDQ));
  PreparedBackward p = prepareBackward(req, arch, options);
  // Load every kernel before the first launch: a compile or JIT failure leaves
  // nothing half-done on the stream.
  std::array<const LoadedKernel *, kBackwardKernels> kernels{};
  for (int i = 0; i < p.numKernels; ++i)
    kernels[static_cast<std::size_t>(i)] = &ctx.kernels->get(p.kernels[static_cast<std::size_t>(i)].spec);
  const LoadedKernel *dqFirst = p.dqFirst ? &ctx.kernels->get(p.dqFirst->spec) : nullptr;
  auto params = kernelParams(p.args);
  const CudaDriver &drv = *ctx.drv;
  ScopedContext scope(drv, ctx.cuContext);
  if (ctx.checkPointers)
    checkDeviceSpans(ctx, p.spans); // cuMemGetAddressRange wants a current context
  if (p.workspaceBytes > 0 && p.numKernels == kBackwardKernels) {
    p.args.workspace = ctx.workspaces->get(stream, p.workspaceBytes);
    if (p.dqFirst)
      p.args.tokenDone = p.args.workspace + p.tokenDoneOffset;
    // The selection map and the split walk's per-tile state start at zero (on the stream: after any earlier use).
    CUresult r = drv.cuMemsetD8Async(p.args.workspace, 0, p.workspaceZeroedBytes, static_cast<CUstream>(stream));
    if (r != CUDA_SUCCESS)
      fail(CudaDriver::statusFor(r), "zeroing the backward workspace ({} bytes) failed: {}", p.workspaceZeroedBytes,
           drv.errorText(r));
  }
  const char *launched = " (the earlier backward kernels of this call were launched)";
  for (int i = 0; i < p.numKernels; ++i) {
    const LaunchDims &d = p.kernels[static_cast<std::size_t>(i)];
    if (i == 1 && dqFirst) // the dQ schedule's first kernel, then bwd_dq on the CTAs it left
      launchKernel(ctx, *dqFirst, p.dqFirst->grid, p.dqFirst->threads, p.dqFirst->sharedBytes, params.data(), stream,
                   launched);
    launchKernel(ctx, *kernels[static_cast<std::size_t>(i)], d.grid, d.threads, d.sharedBytes, params.data(), stream,
                 i == 0 ? "" : launched);
  }
}

} // namespace nsajit::rt
