#!/usr/bin/env python3
"""Training check: a small NSA transformer trained on a synthetic long-range task, once with
the nsajit backend (nsajit.torch.nsa_attention: compression, fused top-n and the three
branches, forward and backward, all on nsajit kernels) and once with the reference backend
(nsajit.reference.nsa_attention in float32), from the same initial weights on the same
batches, for each of several seeds. Per-step loss, accuracy, wall time and how often the
selection finds the needle go to a JSON file (--out) that bench/train/plot_curves.py turns
into a plot and an agreement verdict.

The task (--task needle, the default): each sequence of T tokens is random filler with one
needle (a value token) at a random position after the first selection block and before
T - Q - w, so it is outside every query's sliding window and never in a forced block; the
last Q tokens are a query token, and at each of them the model predicts the needle (chance:
ln(values)). The answer must come through the compressed branch or the selected blocks,
and the loop measures whether the selection finds the needle: the fraction of (query,
KV head) whose selected blocks include the needle's block, against the chance of a blind
selection, (n - 3) / (visible blocks - 3). --task recall is multi-query associative recall
(harder: it stayed on its plateau for 300 steps in an earlier run).

What it shows (H100, torch 2.11, the defaults: 600 steps, seeds 0, 1, 2;
bench/train/results/2026-11-25-h100-needle-3seeds):
- both backends learn the task: the loss falls from 4.34 (chance 4.16) to 1.6 (nsajit) and
  0.6 to 1.4 (reference) in the two seeds that learn within 600 steps, and neither learns it
  in seed 2 (3.15 and 3.31); the selection includes the needle's block 31-49 % of the time
  with nsajit and 25-38 % with the reference, against 17 % by chance;
- the curves are identical to 4 digits for the first ~50 steps and then part: the
  training is chaotic once it learns, and the same seed of the float32 reference alone
  gave final losses of 0.84 and 1.32 in two runs (GPU atomics in PyTorch's backward). So the
  comparison is over seeds: mean final loss nsajit 2.11, reference 1.78, difference 0.34
  against 2 standard errors of 1.90 -> agree (plot_curves.py prints the verdict);
- nsajit's step is 7.7x faster (22 ms against 171 ms).

Model: token embedding, L pre-norm blocks (a previous-token mix, so a value's key can be
matched, then NSA attention with q/k/v/gate projections; an MLP), a final norm and an
output head read at the answer positions. bf16 autocast on CUDA with float32 weights.

Usage (about 6 minutes on an H100 for both backends and 3 seeds; --seeds 0 for one):

    python3 bench/train/train_nsa.py --out /tmp/train_nsa.json
    /usr/bin/python3 bench/train/plot_curves.py /tmp/train_nsa.json --png /tmp/train_nsa.png

Needs only torch (and libnsajit.so for the nsajit backend: $NSAJIT_LIBRARY or
<repo>/build/lib/libnsajit.so). ``--device cpu --backends reference`` runs anywhere (slowly).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "python") not in sys.path:
    sys.path.insert(0, str(REPO / "python"))

import nsajit  # noqa: E402
from nsajit import reference as R  # noqa: E402


# ---- data ---------------------------------------------------------------------------------


class AssociativeRecall:
    """Batches of the recall task, a pure function of (seed, step): both backends see the
    same data. Vocabulary: [0, fillers) filler, then keys, then values."""

    def __init__(self, T: int, pairs: int, queries: int, keys: int, values: int, fillers: int):
        if queries > pairs or pairs > keys:
            raise ValueError("need queries <= pairs <= keys")
        self.T, self.P, self.Q = T, pairs, queries
        self.n_keys, self.n_values, self.fillers = keys, values, fillers
        self.key_base, self.value_base = fillers, fillers + keys
        self.vocab = fillers + keys + values
        self.context = T - 2 * queries
        self.segment = self.context // pairs
        if self.segment < 3:
            raise ValueError(f"T = {T} is too short for {pairs} pairs and {queries} queries")

    def batch(self, B: int, step: int, seed: int, device):
        g = torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)
        P, Q = self.P, self.Q
        tokens = torch.randint(0, self.fillers, (B, self.T), generator=g, device=device)
        keys = torch.rand(B, self.n_keys, generator=g, device=device).argsort(dim=-1)[:, :P]
        values = torch.randint(0, self.n_values, (B, P), generator=g, device=device)
        offsets = torch.randint(0, self.segment - 1, (B, P), generator=g, device=device)
        pos = torch.arange(P, device=device) * self.segment + offsets  # key at pos, value at pos + 1
        tokens.scatter_(1, pos, keys + self.key_base)
        tokens.scatter_(1, pos + 1, values + self.value_base)
        asked = torch.rand(B, P, generator=g, device=device).argsort(dim=-1)[:, :Q]
        q_keys, q_values = keys.gather(1, asked), values.gather(1, asked)
        qpos = self.context + 2 * torch.arange(Q, device=device)  # the asked key; its value follows
        tokens[:, qpos] = q_keys + self.key_base
        tokens[:, qpos + 1] = q_values + self.value_base
        targets = q_values + self.value_base  # predicted at the asked key's position
        return tokens, qpos, targets, None  # no single needle position


class NeedleRetrieval:
    """Batches of the needle task, a pure function of (seed, step): both backends see the same
    data. Vocabulary: [0, fillers) filler, then the needle values, then the query token.

    Each sequence is random filler with one needle (a value token) at a random position
    before T - Q - w and after the first selection block (so it is outside every query's
    sliding window and never in a forced initial block); its last Q tokens are the query
    token, and at each of them the model predicts the needle. The answer must come
    through the compressed branch or the selected blocks: the selection has to find the
    needle's block, which the training loop measures (``selection_hit``)."""

    def __init__(self, T: int, queries: int, values: int, fillers: int, w: int, l_sel: int):
        self.T, self.Q, self.n_values, self.fillers = T, queries, values, fillers
        self.value_base, self.query_token = fillers, fillers + values
        self.vocab = fillers + values + 1
        self.low, self.high = l_sel, T - queries - w  # needle position range [low, high)
        if self.high <= self.low:
            raise ValueError(f"T = {T} is too short for w = {w}, {queries} queries and l_sel = {l_sel}")

    def batch(self, B: int, step: int, seed: int, device):
        g = torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)
        tokens = torch.randint(0, self.fillers, (B, self.T), generator=g, device=device)
        values = torch.randint(0, self.n_values, (B,), generator=g, device=device)
        pos = torch.randint(self.low, self.high, (B,), generator=g, device=device)
        tokens.scatter_(1, pos[:, None], (values + self.value_base)[:, None])
        qpos = torch.arange(self.T - self.Q, self.T, device=device)
        tokens[:, qpos] = self.query_token
        targets = (values + self.value_base)[:, None].expand(B, self.Q)
        return tokens, qpos, targets, pos


# ---- model --------------------------------------------------------------------------------


class NSAAttention(nn.Module):
    def __init__(self, d_model: int, hq: int, h: int, dk: int, dv: int, nsa: dict, backend: str,
                 ref_checkpoint: bool):
        super().__init__()
        self.hq, self.h, self.dk, self.dv = hq, h, dk, dv
        self.nsa, self.backend, self.ref_checkpoint = nsa, backend, ref_checkpoint
        self.capture = False  # keep the selected block indices of the next forward
        self.last_indices = None
        self.wq = nn.Linear(d_model, hq * dk, bias=False)
        self.wk = nn.Linear(d_model, h * dk, bias=False)
        self.wv = nn.Linear(d_model, h * dv, bias=False)
        self.wg = nn.Linear(d_model, 3 * hq)  # gates: sigmoid(MLP(x)) per branch and query head
        self.wo = nn.Linear(hq * dv, d_model, bias=False)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.hq, self.dk)
        k = self.wk(x).view(B, T, self.h, self.dk)
        v = self.wv(x).view(B, T, self.h, self.dv)
        g = torch.sigmoid(self.wg(x).float()).view(B, T, 3, self.hq)
        g_cmp, g_slc, g_swa = g.unbind(2)
        if self.backend == "nsajit":
            import nsajit.torch as nt

            # q/k/v are bf16 under autocast; the gates are sigmoids, so skip the range check (a sync).
            o, indices = nt.nsa_attention(q, k, v, g_cmp, g_slc, g_swa, check_gate_range=False,
                                          return_indices=True, **self.nsa)
        else:
            with torch.autocast(device_type=x.device.type, enabled=False):
                o, indices = R.nsa_attention(q.float(), k.float(), v.float(), g_cmp.float(), g_slc.float(),
                                             g_swa.float(), checkpoint=self.ref_checkpoint, return_indices=True,
                                             **self.nsa)
            o = o.to(q.dtype)
        self.last_indices = indices.detach() if self.capture else None
        return self.wo(o.reshape(B, T, self.hq * self.dv))


class Block(nn.Module):
    def __init__(self, d_model: int, attn: NSAAttention):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.shift = nn.Linear(d_model, d_model, bias=False)  # mixes in the previous token
        self.attn = attn
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x):
        h = self.norm1(x)
        h = h + self.shift(F.pad(h[:, :-1], (0, 0, 1, 0)))
        x = x + self.attn(h)
        return x + self.mlp(self.norm2(x))


class NSATransformer(nn.Module):
    def __init__(self, vocab: int, d_model: int, layers: int, hq: int, h: int, dk: int, dv: int, nsa: dict,
                 backend: str, ref_checkpoint: bool = True, tie: bool = True):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList(
            Block(d_model, NSAAttention(d_model, hq, h, dk, dv, nsa, backend, ref_checkpoint)) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        if tie:  # the output head reads values in the embedding's space: copying a value is easy
            self.head.weight = self.embed.weight

    def forward(self, tokens, positions):
        """Logits [B, len(positions), vocab] at the given positions."""
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, positions]))


# ---- training -----------------------------------------------------------------------------


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lr_at(step: int, args) -> float:
    if step < args.lr_warmup:
        return args.lr * (step + 1) / args.lr_warmup
    progress = (step - args.lr_warmup) / max(1, args.steps - args.lr_warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def selection_hits(model: "NSATransformer", qpos, pos, l_sel: int) -> list:
    """Per layer: the fraction of (sequence, query position, KV head) whose selected blocks
    (captured in the last forward) include the needle's block."""
    hits = []
    for block in model.blocks:
        idx = block.attn.last_indices[:, qpos]  # [B, Q, H, n]
        needle_block = (pos // l_sel).view(-1, 1, 1, 1)
        hits.append(float((idx == needle_block).any(-1).float().mean()))
    return hits


def set_capture(model: "NSATransformer", on: bool) -> None:
    for block in model.blocks:
        block.attn.capture = on


def train(backend: str, args, task, device, seed: int) -> dict:
    nsa = dict(l=args.l, d=args.d, l_sel=args.l_sel, n=args.n, w=args.w)
    torch.manual_seed(seed)  # the same initial weights for every backend
    model = NSATransformer(task.vocab, args.d_model, args.layers, args.heads, args.kv_heads, args.head_dim,
                           args.head_dim, nsa, backend, ref_checkpoint=not args.no_ref_checkpoint,
                           tie=not args.untied).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    amp = device.type == "cuda" and not args.no_amp

    def step_fn(tokens, qpos, targets, update: bool):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(tokens, qpos)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        if update:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach(), (logits.detach().argmax(-1) == targets).float().mean()

    # Warm-up: forward + backward without an optimizer step (kernels JIT-compiled, caches
    # filled); the weights stay as initialised.
    t0 = time.perf_counter()
    warm = task.batch(args.batch, 0, seed, device)
    for _ in range(args.warmup):
        step_fn(*warm[:3], update=False)
    sync(device)
    warmup_s = time.perf_counter() - t0
    print(f"[{backend}] warm-up: {args.warmup} forward+backward passes in {warmup_s:.2f} s", flush=True)

    losses, accs, times, hits = [], [], [], []
    start = time.perf_counter()
    stopped_early = False
    for step in range(args.steps):
        tokens, qpos, targets, pos = task.batch(args.batch, step, seed, device)
        logged = step % args.log_every == 0 or step == args.steps - 1
        set_capture(model, logged and pos is not None)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        sync(device)
        t = time.perf_counter()
        loss, acc = step_fn(tokens, qpos, targets, update=True)
        sync(device)
        times.append(time.perf_counter() - t)
        losses.append(float(loss))
        accs.append(float(acc))
        if not math.isfinite(losses[-1]):
            print(f"[{backend}] step {step}: loss is {losses[-1]}, stopping", flush=True)
            stopped_early = True
            break
        if logged:
            recent = slice(max(0, len(losses) - args.log_every), len(losses))
            hit = ""
            if pos is not None:
                hits.append({"step": step, "per_layer": selection_hits(model, qpos, pos, args.l_sel)})
                hit = "  needle selected " + "/".join(f"{h:.2f}" for h in hits[-1]["per_layer"])
            print(f"[{backend}] step {step:4d}  loss {statistics.fmean(losses[recent]):.4f}  "
                  f"acc {statistics.fmean(accs[recent]):.3f}  {1e3 * statistics.median(times[recent]):7.1f} ms/step  "
                  f"lr {lr_at(step, args):.2e}{hit}", flush=True)
        if args.time_limit and time.perf_counter() - start > args.time_limit:
            print(f"[{backend}] time limit {args.time_limit} s reached after {step + 1} steps", flush=True)
            stopped_early = True
            break
    total_s = time.perf_counter() - start
    timed = times[min(args.skip_timing, max(0, len(times) - 1)):]
    result = {
        "loss": losses,
        "acc": accs,
        "selection_hit": hits,
        "step_time_s": times,
        "steps": len(losses),
        "stopped_early": stopped_early,
        "warmup_s": warmup_s,
        "train_s": total_s,
        "timing_skips_first": args.skip_timing,
        "mean_step_s": statistics.fmean(timed) if timed else None,
        "median_step_s": statistics.median(timed) if timed else None,
        "max_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    print(f"[{backend}] {len(losses)} steps in {total_s:.1f} s: median {1e3 * (result['median_step_s'] or 0):.1f} "
          f"ms/step, final loss (mean of last 20) {statistics.fmean(losses[-20:]):.4f}, "
          f"acc {statistics.fmean(accs[-20:]):.3f}", flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file for the per-step results")
    p.add_argument("--backends", default="nsajit,reference", help="comma-separated: nsajit, reference")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--task", default="needle", choices=("needle", "recall"),
                   help="needle: find one value token far away; recall: multi-query associative recall")
    p.add_argument("--seq", type=int, default=1024, help="sequence length T")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--queries", type=int, default=8)
    p.add_argument("--keys", type=int, default=8, help="key vocabulary (>= pairs)")
    p.add_argument("--values", type=int, default=64)
    p.add_argument("--fillers", type=int, default=16)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=16, help="query heads HQ")
    p.add_argument("--kv-heads", type=int, default=1, help="KV heads H (G = HQ / H)")
    p.add_argument("--head-dim", type=int, default=64, help="Dk = Dv")
    p.add_argument("--l", type=int, default=32, help="compression block")
    p.add_argument("--d", type=int, default=16, help="compression stride")
    p.add_argument("--l-sel", type=int, default=32, help="selection block l'")
    p.add_argument("--n", type=int, default=8, help="selected blocks (1 initial + 2 local included)")
    p.add_argument("--w", type=int, default=128, help="sliding window")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lr-warmup", type=int, default=30)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default="0,1,2",
                   help="comma-separated seeds (weights and data): each backend trains once per seed, so the "
                        "comparison can tell the backends apart from seed-to-seed variation")
    p.add_argument("--warmup", type=int, default=3, help="untimed forward+backward passes before training")
    p.add_argument("--skip-timing", type=int, default=5, help="steps left out of the mean/median step time")
    p.add_argument("--time-limit", type=float, default=150.0, help="seconds per backend (0: none)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--untied", action="store_true", help="separate output head (default: tied to the embedding)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast (the nsajit backend needs it)")
    p.add_argument("--no-ref-checkpoint", action="store_true",
                   help="reference backend: keep every chunk's scores for backward (more memory, faster)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("nsajit", "reference"):
            raise SystemExit(f"unknown backend {b!r}; allowed: nsajit, reference")
    if "nsajit" in backends and (device.type != "cuda" or args.no_amp):
        raise SystemExit("the nsajit backend needs --device cuda and bf16 autocast")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 reference attention stays float32
    if args.task == "needle":
        task = NeedleRetrieval(args.seq, args.queries, args.values, args.fillers, args.w, args.l_sel)
        visible = (args.seq - 1) // args.l_sel + 1  # blocks a final query sees
        forced = 3  # the initial block and the two local blocks (nsa_attention defaults)
        info = {
            "task": f"needle retrieval: T={args.seq}, {args.queries} queries, {args.values} values, "
                    f"{args.fillers} fillers, needle at [{task.low}, {task.high})",
            "chance_loss": math.log(args.values),
            # A selection blind to the needle picks its block among the unforced ones by chance.
            "chance_selection_hit": (args.n - forced) / max(1, visible - forced),
        }
    else:
        task = AssociativeRecall(args.seq, args.pairs, args.queries, args.keys, args.values, args.fillers)
        info = {
            "task": f"associative recall: T={args.seq}, {args.pairs} pairs, {args.queries} queries, "
                    f"{args.keys} keys, {args.values} values, {args.fillers} fillers",
            "chance_loss": math.log(args.values),
            "bag_of_values_loss": math.log(args.pairs),
        }
    info.update({
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "G": args.heads // args.kv_heads,
    })
    if "nsajit" in backends:
        info["nsajit"] = nsajit.version()
        info["library"] = nsajit.library().path
    print(f"{info['task']}; device {info['device']}; backends {', '.join(backends)}", flush=True)
    doc = {"config": vars(args), "info": info, "runs": {}}
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()] if args.seeds else [args.seed]
    doc["seeds"] = {b: {} for b in backends}
    for seed in seeds:
        for backend in backends:
            print(f"== {backend}, seed {seed}", flush=True)
            run = train(backend, args, task, device, seed)
            doc["seeds"][backend][str(seed)] = run
            if seed == seeds[0]:
                doc["runs"][backend] = run
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:  # after each seed, so a later failure keeps the earlier ones
            json.dump(doc, f)
    runs = doc["runs"]
    if "nsajit" in runs and "reference" in runs and runs["nsajit"]["median_step_s"]:
        ratio = runs["reference"]["median_step_s"] / runs["nsajit"]["median_step_s"]
        print(f"median step time: nsajit {1e3 * runs['nsajit']['median_step_s']:.1f} ms, reference "
              f"{1e3 * runs['reference']['median_step_s']:.1f} ms (reference / nsajit = {ratio:.2f})", flush=True)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
