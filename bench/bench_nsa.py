#!/usr/bin/env python3
"""NSA benchmark: nsajit kernels against PyTorch SDPA (flash, cuDNN), FlexAttention and the plain
PyTorch reference, in one run on the same inputs (docs/GPU.md, "Main benchmark configuration").

What it times (bf16, B = 1; CUDA events after warm-up; median, min and p90 of many runs):
- nsajit (nsajit.torch): the selected branch with random and with local block indices, the
  compressed branch + fused top-n (l = d = 64 and l = 32, d = 16), compressed + top-n + selected,
  the window branch, and the whole NSA layer (nsa_attention: its own fused selection, or given
  local indices) with the paper's parameters;
- PyTorch SDPA dense causal attention, flash and cuDNN back ends; FlexAttention with a
  sliding-window block mask (torch.compile; its compile time is recorded);
- the plain PyTorch reference (nsajit.reference) where it fits (T <= --ref-max-T);
- forward, and forward + backward (the gradient of loss = (out * dout).sum() for a fixed random
  dout, i.e. backward from dout);
- the ceilings of this GPU in the same run (bf16 matmul, HBM copy, L2-resident reads), the
  compile time of a new configuration (cold and from the disk cache, in subprocesses), and for
  every nsajit measurement the fraction of the bound (compute, L2 or HBM) that limits it.

Writes bench/results/<date>-<gpu>.json (--out) and a PNG plot (--png), prints progress lines
and a table. Targets of the performance issue are reported as pass/miss in the JSON.

    python3 bench/bench_nsa.py                    # everything (sized for ~5 minutes on an H100)
    python3 bench/bench_nsa.py --quick            # T = 8k and 64k, few repetitions (sized for < 2 min)
    python3 bench/bench_nsa.py --T 64k --only "nsajit selected"
    python3 bench/bench_nsa.py --list             # the plan, no GPU needed
    python3 bench/bench_nsa.py --plot-from bench/results/X.json   # table + PNG from a JSON

libnsajit.so is found by nsajit ($NSAJIT_LIBRARY, else <repo>/build/lib). See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import inspect
import json
import math
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "python") not in sys.path:
    sys.path.insert(0, str(REPO / "python"))

SCHEMA = "nsajit-bench-nsa/1"
KI = 1024
DEVICE = "cuda"  # one place, so that the CPU smoke test can run the case machinery

# ---- the configurations (docs/GPU.md) ------------------------------------------------------

L_SEL, N_SEL, WINDOW = 64, 16, 512  # l', n, w
CMP_MAIN, CMP_PAPER = (64, 64), (32, 16)  # (l, d): mean pooling / the paper's
UNION_TOKENS = 8  # the union schedule's tokens per CTA in the explicit cases
LOCAL_NEAR, LOCAL_FAR = 16, 2  # local indices: window of near blocks, number of far ones
MAIN_T = 64 * KI  # the issue's targets are at T = 64k


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    HQ: int
    H: int
    Dk: int
    Dv: int

    @property
    def G(self) -> int:
        return self.HQ // self.H

    def as_dict(self) -> Dict[str, int]:
        return {"name": self.name, "HQ": self.HQ, "H": self.H, "G": self.G, "Dk": self.Dk, "Dv": self.Dv}


SHAPES = {s.name: s for s in (
    Shape("main", 64, 4, 128, 128),   # G = 16
    Shape("paper", 64, 4, 192, 128),  # the paper's head dims
    Shape("G1", 16, 16, 128, 128),    # small groups
    Shape("G4", 16, 4, 128, 128),
    Shape("G8", 16, 2, 128, 128),
)}

# Targets of the performance issue (main configuration, T = 64k unless said).
TARGET_TEXT = {
    "selected_random_fwd": "nsajit selected, random indices, forward <= 20 ms",
    "selected_random_fwdbwd": "nsajit selected, random indices, forward + backward <= 60 ms",
    "selected_local_speedup_fwd": "nsajit selected, local indices: default schedule >= 3x faster than the "
                                  "per-token one (forward)",
    "selected_local_speedup_fwdbwd": "nsajit selected, local indices: default schedule >= 3x faster than the "
                                     "per-token one (forward + backward)",
    "cmp64_top16_fwd": "nsajit compressed (l = d = 64) + fused top-16, forward <= 7 ms",
    "window_fwd": "nsajit window w = 512, forward <= 2.2 ms",
    "window_fwdbwd": "nsajit window w = 512, forward + backward <= 8 ms",
    "nsa_fused_vs_cudnn_fwd": "whole NSA (paper parameters, own selection) >= 3x faster than SDPA cuDNN (forward)",
    "nsa_fused_vs_cudnn_fwdbwd": "whole NSA (paper parameters, own selection) >= 3x faster than SDPA cuDNN "
                                 "(forward + backward)",
    "nsa_local_vs_cudnn_fwd": "whole NSA (paper parameters, local indices) >= 5x faster than SDPA cuDNN (forward)",
    "nsa_local_vs_cudnn_fwdbwd": "whole NSA (paper parameters, local indices) >= 5x faster than SDPA cuDNN "
                                 "(forward + backward)",
    "compile_cold": "a new configuration compiles (all its kernels) in <= 2 s cold",
    "compile_cached": "a configuration loads (all its kernels) in <= 10 ms from the disk cache",
}

# docs/GPU.md, one run on an H100 on 2026-11-24: context only, NOT measured by this script.
GPU_MD_FIGURES = {
    "note": "docs/GPU.md reference figures (H100, 2026-11-24, T = 64k, main configuration, ms); "
            "not measured by this run",
    "sdpa flash dense": {"fwd": 194.5, "fwdbwd": 744.8},
    "sdpa cudnn dense": {"fwd": 114.0, "fwdbwd": 440.2},
    "fla selected, given random indices": {"fwd": 23.6, "fwdbwd": 76.2},
    "fla mean-pool compression (l = d = 64) + top-16 + selected": {"fwd": 57.1, "fwdbwd": 233.9},
    "flex window w = 512 (16 s to compile)": {"fwd": 4.35, "fwdbwd": 17.1},
    "ceilings": {"d2d copy TB/s": 3.0, "bf16 8192^3 matmul TFLOP/s": 754},
}

# ---- command line ----------------------------------------------------------------------------


def parse_tokens(text: str) -> List[int]:
    """'8k,64k' or '8192 65536' -> [8192, 65536] (k = 1024)."""
    out = []
    for tok in re.split(r"[,\s]+", text.strip()):
        if not tok:
            continue
        m = re.fullmatch(r"(\d+)([kK]?)", tok)
        if not m:
            raise argparse.ArgumentTypeError(f"bad sequence length {tok!r} (use e.g. 8k or 8192)")
        out.append(int(m.group(1)) * (KI if m.group(2) else 1))
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", default=None, help="sequence lengths, e.g. '8k,64k' (default 8k,16k,32k,64k; "
                                             "--quick: 8k,64k)")
    p.add_argument("--quick", action="store_true", help="T = 8k and 64k, few repetitions, no small-group "
                                                       "cases, FlexAttention at the largest T only")
    p.add_argument("--only", default=None, help="comma-separated substrings; run only the cases whose name "
                                                "contains one (see --list), e.g. 'nsajit selected,sdpa-cudnn'")
    p.add_argument("--list", action="store_true", help="print the planned measurements and exit")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/<date>-<gpu>.json)")
    p.add_argument("--png", default=None, help="plot path (default: the JSON path with .png)")
    p.add_argument("--no-png", action="store_true")
    p.add_argument("--plot-from", default=None, metavar="JSON", help="no benchmark: print the table and "
                                                                     "write the PNG of an existing JSON")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls after the first (default 3, quick 1)")
    p.add_argument("--min-reps", type=int, default=None, help="default 5, quick 3")
    p.add_argument("--max-reps", type=int, default=None, help="default 30, quick 10")
    p.add_argument("--target-s", type=float, default=None,
                   help="timed seconds aimed at per measurement (reps adapt; default 0.5, quick 0.25)")
    p.add_argument("--ref-reps", type=int, default=None, help="reps of the PyTorch reference (default 3, quick 2)")
    p.add_argument("--ref-max-T", type=int, default=8 * KI, help="largest T for the PyTorch reference (default "
                                                                 "8192; larger T are recorded as skipped)")
    p.add_argument("--flex-T", default=None, help="T values for FlexAttention (each compiles anew; default all, "
                                                  "--quick the largest)")
    p.add_argument("--groups-T", default=None, help="T of the small-group cases (G = 1, 4, 8; default 64k if "
                                                    "run else the largest T; 0 = none; --quick: none)")
    p.add_argument("--no-compile-test", action="store_true", help="skip the cold/cached compile subprocesses")
    p.add_argument("--max-minutes", type=float, default=9.0,
                   help="skip the cases not started after this many minutes (default 9: the GPU machine's "
                        "10-minute command limit; 0 = no limit). The JSON is written after every case")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true",
                   help="after timing, run each measurement once under torch.profiler and record the GPU time "
                        "of every kernel (the 'kernels' field; printed after the measurement)")
    p.add_argument("--backward-split", type=int, default=0, metavar="TOKENS",
                   help="the most query tokens one dK/dV CTA walks (nsajit_context_set_backward_split; "
                        "default 0: automatic)")
    p.add_argument("--compile-child", default=None, help=argparse.SUPPRESS)  # internal: one subprocess
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> SimpleNamespace:
    """The run's settings, with --quick's defaults where an option was not given."""
    q = args.quick
    Ts = sorted(set(parse_tokens(args.T))) if args.T else ([8 * KI, 64 * KI] if q else
                                                           [8 * KI, 16 * KI, 32 * KI, 64 * KI])
    if not Ts or min(Ts) < 1:
        raise SystemExit("--T: give at least one positive sequence length")
    if args.flex_T is not None:
        flex_T = parse_tokens(args.flex_T)
    else:
        flex_T = [max(Ts)] if q else list(Ts)
    if args.groups_T is not None:
        g = parse_tokens(args.groups_T)
        groups_T = g[0] if g and g[0] > 0 else 0
    else:
        groups_T = 0 if q else (MAIN_T if MAIN_T in Ts else max(Ts))
    pick = lambda given, full, quick: given if given is not None else (quick if q else full)  # noqa: E731
    return SimpleNamespace(
        T=Ts, quick=q, only=[s.strip() for s in args.only.split(",") if s.strip()] if args.only else [],
        warmup=pick(args.warmup, 3, 1), min_reps=pick(args.min_reps, 5, 3), max_reps=pick(args.max_reps, 30, 10),
        target_s=pick(args.target_s, 0.5, 0.25), ref_reps=pick(args.ref_reps, 3, 2), ref_max_T=args.ref_max_T,
        flex_T=flex_T, groups_T=groups_T, compile_test=not args.no_compile_test, seed=args.seed,
        profile=getattr(args, "profile", False), max_minutes=args.max_minutes)


# ---- the plan: cases and their measurements ----------------------------------------------------


@dataclasses.dataclass
class Case:
    label: str  # e.g. "nsajit selected random"
    impl: str  # nsajit | sdpa-flash | sdpa-cudnn | flex | ref
    op: str  # selected | window | cmp+topn | cmp+topn+selected | nsa | dense
    shape: str  # a key of SHAPES
    T: int
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)
    meas: Tuple[str, ...] = ("fwd", "fwdbwd")
    skip: Optional[str] = None  # a reason: planned but not run

    @property
    def name(self) -> str:
        return f"{self.label} [{self.shape}] T={self.T}"


def _cmp_case(shape: str, T: int, ld: Tuple[int, int], with_parts: bool = True) -> Case:
    l, d = ld
    tag = f"cmp{l}" if l == d else f"cmp{l}/{d}"
    meas = ("fwd", "fwd:pool", "fwd:cmp", "fwd:topn", "fwdbwd") if with_parts else ("fwd", "fwdbwd")
    return Case(f"nsajit {tag}+top{N_SEL}", "nsajit", "cmp+topn", shape, T, {"l": l, "d": d}, meas)


def _ref_cases(shape: str, T: int, s, ops: Sequence[Tuple[str, str, dict]]) -> List[Case]:
    why = None if T <= s.ref_max_T else (f"T = {T} > --ref-max-T = {s.ref_max_T}: the plain PyTorch reference "
                                         f"needs O(T^2) time (and memory without checkpointing) there")
    return [Case(label, "ref", op, shape, T, dict(params), skip=why) for label, op, params in ops]


def main_cases(T: int, s) -> List[Case]:
    cases = [
        Case("nsajit selected random", "nsajit", "selected", "main", T, {"indices": "random"}),
        Case("nsajit selected local", "nsajit", "selected", "main", T, {"indices": "local"}),
        Case("nsajit selected local per-token", "nsajit", "selected", "main", T,
             {"indices": "local", "tokens_per_cta": 1}),
        Case("nsajit selected local union", "nsajit", "selected", "main", T,
             {"indices": "local", "tokens_per_cta": UNION_TOKENS}),
        Case("nsajit selected random union", "nsajit", "selected", "main", T,
             {"indices": "random", "tokens_per_cta": UNION_TOKENS}),
        _cmp_case("main", T, CMP_MAIN),
        _cmp_case("main", T, CMP_PAPER),
        Case(f"nsajit cmp64+top{N_SEL}+selected", "nsajit", "cmp+topn+selected", "main", T,
             {"l": CMP_MAIN[0], "d": CMP_MAIN[1]}),
        Case("nsajit window", "nsajit", "window", "main", T),
        Case("sdpa-flash dense", "sdpa-flash", "dense", "main", T),
        Case("sdpa-cudnn dense", "sdpa-cudnn", "dense", "main", T),
        Case("flex window", "flex", "window", "main", T,
             skip=None if T in s.flex_T else f"T = {T} not in --flex-T (each T compiles anew: time budget)"),
    ]
    cases += _ref_cases("main", T, s, [
        ("ref selected random", "selected", {"indices": "random"}),
        ("ref window", "window", {}),
        (f"ref cmp64+top{N_SEL}", "cmp+topn", {"l": CMP_MAIN[0], "d": CMP_MAIN[1]}),
    ])
    return cases


def paper_cases(T: int, s, branches: bool) -> List[Case]:
    l, d = CMP_PAPER
    cases = [
        Case("nsajit nsa fused", "nsajit", "nsa", "paper", T, {"l": l, "d": d, "indices": None}),
        Case("nsajit nsa local", "nsajit", "nsa", "paper", T, {"l": l, "d": d, "indices": "local"}),
        Case("sdpa-cudnn dense", "sdpa-cudnn", "dense", "paper", T),
    ]
    cases += _ref_cases("paper", T, s, [("ref nsa", "nsa", {"l": l, "d": d, "indices": None})])
    if branches:  # the paper's head dims, each branch, at the largest T
        cases += [
            Case("sdpa-flash dense", "sdpa-flash", "dense", "paper", T),
            Case("nsajit selected random", "nsajit", "selected", "paper", T, {"indices": "random"}),
            _cmp_case("paper", T, CMP_PAPER, with_parts=False),
            Case("nsajit window", "nsajit", "window", "paper", T),
        ]
    return cases


def group_cases(shape: str, T: int) -> List[Case]:
    return [
        Case("nsajit selected random", "nsajit", "selected", shape, T, {"indices": "random"}),
        Case("nsajit selected local", "nsajit", "selected", shape, T, {"indices": "local"}),
        _cmp_case(shape, T, CMP_MAIN, with_parts=False),
        Case("nsajit window", "nsajit", "window", shape, T),
        Case("sdpa-cudnn dense", "sdpa-cudnn", "dense", shape, T),
    ]


def matches(name: str, only: Sequence[str]) -> bool:
    return not only or any(o in name for o in only)


def plan_cases(s) -> List[Case]:
    """Every case of the run, grouped by (shape, T) so that each group's inputs are made once."""
    cases: List[Case] = []
    for T in s.T:
        cases += main_cases(T, s)
    for T in s.T:
        cases += paper_cases(T, s, branches=(T == max(s.T)))
    if s.groups_T:
        for g in ("G1", "G4", "G8"):
            cases += group_cases(g, s.groups_T)
    return [c for c in cases if matches(c.name, s.only)]


def plan_lines(s, cases: Sequence[Case]) -> List[str]:
    lines = ["ceilings: bf16 matmul 8192^3, d2d copy, L2-resident read"]
    if s.compile_test and matches("compile", s.only):
        lines.append("compile: a new configuration, cold and cached (2 subprocesses)")
    for c in cases:
        if c.skip:
            lines.append(f"{c.name} {'/'.join(c.meas)}: skipped ({c.skip})")
            continue
        lines += [f"{c.name} {m}" for m in c.meas]
    return lines


# ---- work and bounds (pure arithmetic, also used on CPU) ----------------------------------------
# Per (query head, key) pair: forward 2*Dk (q.k) + 2*Dv (p.v) FLOPs; backward 2*(3*Dk + 2*Dv)
# (q.k again, dO.v, p^T.dO, dS.k, dS^T.q), i.e. 2.5x the forward when Dk = Dv.


def pair_flops(sh: Shape) -> Tuple[int, int]:
    return 2 * sh.Dk + 2 * sh.Dv, 2 * (3 * sh.Dk + 2 * sh.Dv)


def causal_keys(T: int) -> int:
    """Keys seen by all queries of one head, causal: sum_t (t + 1)."""
    return T * (T + 1) // 2


def window_keys(T: int, w: int) -> int:
    """sum_t min(t + 1, w)."""
    if T <= w:
        return causal_keys(T)
    return causal_keys(w) + (T - w) * w


def num_compressed(T: int, l: int, d: int) -> int:
    return (T - l) // d + 1 if T >= l else 0


def compressed_keys(T: int, l: int, d: int) -> int:
    """sum_t (compressed tokens visible to t): token i is visible when i*d + l - 1 <= t."""
    return sum((t - l + 1) // d + 1 for t in range(l - 1, T))


def topn_selected_counts(T: int, l_sel: int, n: int) -> Tuple[int, int]:
    """(keys, blocks) per KV head summed over t for the fused top-n, whose forced local block
    is t's own (partly visible): min(n, c + 1) blocks, c = t // l_sel."""
    keys = blocks = 0
    for t in range(T):
        c = t // l_sel
        if c + 1 <= n:
            keys += t + 1
            blocks += c + 1
        else:
            keys += (n - 1) * l_sel + (t - c * l_sel + 1)
            blocks += n
    return keys, blocks


def tensor_bytes(sh: Shape, T: int, n: int = N_SEL, Tc: int = 0) -> Dict[str, int]:
    """Bytes of each tensor (bf16 data, float32 lse/gates, int32 indices), B = 1."""
    return {"Q": T * sh.HQ * sh.Dk * 2, "K": T * sh.H * sh.Dk * 2, "V": T * sh.H * sh.Dv * 2,
            "O": T * sh.HQ * sh.Dv * 2, "LSE": T * sh.HQ * 4, "IDX": T * sh.H * n * 4,
            "KC": Tc * sh.H * sh.Dk * 2, "VC": Tc * sh.H * sh.Dv * 2, "GATE": T * sh.HQ * 4}


def attn_hbm(b: Dict[str, int], k: str = "K", v: str = "V", idx: bool = False) -> Tuple[int, int]:
    """(forward, backward) HBM bytes, each tensor once: forward reads q, k, v (, indices) and
    writes o, lse; backward reads q, k, v, o, dO, lse (, indices), writes and reads delta, writes
    dq, dk, dv."""
    ix = b["IDX"] if idx else 0
    fwd = b["Q"] + b[k] + b[v] + ix + b["O"] + b["LSE"]
    bwd = b["Q"] + b[k] + b[v] + b["O"] + b["O"] + b["LSE"] + ix + 2 * b["LSE"] + b["Q"] + b[k] + b[v]
    return fwd, bwd


def _work(flops: int, l2: int, hbm: int, model: str) -> Dict[str, Any]:
    return {"flops": int(flops), "l2_bytes": int(l2), "hbm_bytes": int(hbm), "model": model}


def selected_work(sh: Shape, T: int, keys: int, blocks: int) -> Dict[str, Dict[str, Any]]:
    """keys, blocks: visible selected keys and blocks summed over (t, KV head)."""
    f1, f2 = pair_flops(sh)
    b = tensor_bytes(sh, T)
    gather = blocks * L_SEL * (sh.Dk + sh.Dv) * 2  # each listed block's K and V tiles into an SM
    q_gather = blocks * sh.G * (sh.Dk + sh.Dv) * 2  # or the G rows of q and dO per (token, block)
    fwd_hbm, bwd_hbm = attn_hbm(b, idx=True)
    model = (f"FLOPs = G * visible selected keys ({keys} over t and KV heads) * (2Dk + 2Dv) [+ 2(3Dk + 2Dv) "
             f"backward]; L2 = visible blocks ({blocks}) * l' * (Dk + Dv) * 2 B of K/V gathered (forward; "
             f"backward gathers again for dq, plus the smaller of a K/V gather or G rows of q and dO per "
             f"block for dk/dv); HBM = q, k, v, indices, o, lse once (backward: q, k, v, o, dO, lse, "
             f"indices, delta, dq, dk, dv once)")
    return {
        "fwd": _work(sh.G * keys * f1, gather, fwd_hbm, model),
        "fwdbwd": _work(sh.G * keys * (f1 + f2), 2 * gather + min(gather, q_gather), fwd_hbm + bwd_hbm, model),
    }


def window_work(sh: Shape, T: int, w: int = WINDOW) -> Dict[str, Dict[str, Any]]:
    f1, f2 = pair_flops(sh)
    pairs = sh.HQ * window_keys(T, w)
    fwd_hbm, bwd_hbm = attn_hbm(tensor_bytes(sh, T))
    model = ("FLOPs = HQ * sum_t min(t+1, w) * (2Dk + 2Dv) [+ 2(3Dk + 2Dv) backward]; HBM = q, k, v, o, "
             "lse once (backward also dO, delta, dq, dk, dv); L2 = HBM (K/V reuse between neighbouring "
             "queries is not modelled: a lower bound)")
    return {"fwd": _work(pairs * f1, fwd_hbm, fwd_hbm, model),
            "fwdbwd": _work(pairs * (f1 + f2), fwd_hbm + bwd_hbm, fwd_hbm + bwd_hbm, model)}


def dense_work(sh: Shape, T: int) -> Dict[str, Dict[str, Any]]:
    f1, f2 = pair_flops(sh)
    pairs = sh.HQ * causal_keys(T)
    fwd_hbm, bwd_hbm = attn_hbm(tensor_bytes(sh, T))
    model = "FLOPs = HQ * T(T+1)/2 * (2Dk + 2Dv) [+ 2(3Dk + 2Dv) backward]; HBM = q, k, v, o, lse once; L2 = HBM"
    return {"fwd": _work(pairs * f1, fwd_hbm, fwd_hbm, model),
            "fwdbwd": _work(pairs * (f1 + f2), fwd_hbm + bwd_hbm, fwd_hbm + bwd_hbm, model)}


def cmp_topn_work(sh: Shape, T: int, l: int, d: int) -> Dict[str, Dict[str, Any]]:
    f1, f2 = pair_flops(sh)
    Tc = num_compressed(T, l, d)
    pairs = sh.HQ * compressed_keys(T, l, d)
    b = tensor_bytes(sh, T, Tc=Tc)
    cmp_fwd, cmp_bwd = attn_hbm(b, "KC", "VC")
    topn_hbm = b["Q"] + b["KC"] + b["LSE"] + b["IDX"]  # reads q, k_cmp, lse; writes indices
    topn_flops = pairs * 2 * sh.Dk  # recomputes q . k_cmp for the block scores
    model = (f"Tc = {Tc}; FLOPs = HQ * visible compressed tokens * (2Dk + 2Dv) (attention) + HQ * visible * "
             f"2Dk (top-n rescoring) [+ 2(3Dk + 2Dv) per pair backward]; HBM = each kernel's inputs and outputs "
             f"once; L2 = HBM")
    return {
        "fwd:pool": pool_work(sh, T, l, d),
        "fwd:cmp": _work(pairs * f1, cmp_fwd, cmp_fwd, model),
        "fwd:topn": _work(topn_flops, topn_hbm, topn_hbm, model),
        "fwd": _work(pairs * f1 + topn_flops, cmp_fwd + topn_hbm, cmp_fwd + topn_hbm, model),
        "fwdbwd": _work(pairs * (f1 + f2) + topn_flops, cmp_fwd + topn_hbm + cmp_bwd,
                        cmp_fwd + topn_hbm + cmp_bwd, model),
    }


def pool_work(sh: Shape, T: int, l: int, d: int) -> Dict[str, Any]:
    """Mean pooling of k and v (no tensor-core work): reads k, v, writes k_cmp, v_cmp."""
    b = tensor_bytes(sh, T, Tc=num_compressed(T, l, d))
    hbm = b["K"] + b["V"] + b["KC"] + b["VC"]
    return _work(0, hbm, hbm, "pooling: HBM = k, v read and k_cmp, v_cmp written once (no tensor-core FLOPs)")


def _add(*works: Dict[str, Any], model: str, hbm: Optional[int] = None) -> Dict[str, Any]:
    return _work(sum(w["flops"] for w in works), sum(w["l2_bytes"] for w in works),
                 hbm if hbm is not None else sum(w["hbm_bytes"] for w in works), model)


def cmp_topn_selected_work(sh: Shape, T: int, l: int, d: int) -> Dict[str, Dict[str, Any]]:
    c = cmp_topn_work(sh, T, l, d)
    keys, blocks = topn_selected_counts(T, L_SEL, N_SEL)
    s = selected_work(sh, T, sh.H * keys, sh.H * blocks)
    p = pool_work(sh, T, l, d)
    pool_bwd = _work(0, 2 * p["hbm_bytes"], 2 * p["hbm_bytes"], "")
    model = ("pooling + compressed + top-n + selected (selected counts: the fused top-n keeps min(n, t//l' + 1) "
             "blocks)")
    return {"fwd": _add(p, c["fwd"], s["fwd"], model=model),
            "fwdbwd": _add(p, pool_bwd, c["fwdbwd"], s["fwdbwd"], model=model)}


def nsa_work(sh: Shape, T: int, l: int, d: int, counts: Optional[Dict[str, int]]) -> Dict[str, Dict[str, Any]]:
    """The layer: compressed + top-n (fused selection only) + selected + window. HBM: the layer's
    inputs (q, k, v, 3 gates) and output once (a fused-layer lower bound)."""
    c = cmp_topn_work(sh, T, l, d)
    if counts is None:
        keys, blocks = topn_selected_counts(T, L_SEL, N_SEL)
        keys, blocks = sh.H * keys, sh.H * blocks
        cmp_part = {m: c[m] for m in ("fwd", "fwdbwd")}
    else:  # given indices: no top-n
        keys, blocks = counts["keys"], counts["blocks"]
        cmp_part = {"fwd": c["fwd:cmp"], "fwdbwd": _cmp_only_fwdbwd(sh, T, l, d)}
    s = selected_work(sh, T, keys, blocks)
    w = window_work(sh, T)
    b = tensor_bytes(sh, T)
    io_fwd = b["Q"] + b["K"] + b["V"] + 3 * b["GATE"] + b["O"]
    io_bwd = 2 * io_fwd + b["O"]  # reads q, k, v, gates, o, dO; writes dq, dk, dv, dgates
    model = ("sum of the branches' FLOPs and L2 bytes; HBM = the layer's inputs (q, k, v, 3 gates) and output "
             "once (backward: also dO, and dq, dk, dv, dgates)")
    return {"fwd": _add(cmp_part["fwd"], s["fwd"], w["fwd"], model=model, hbm=io_fwd),
            "fwdbwd": _add(cmp_part["fwdbwd"], s["fwdbwd"], w["fwdbwd"], model=model, hbm=io_fwd + io_bwd)}


def _cmp_only_fwdbwd(sh: Shape, T: int, l: int, d: int) -> Dict[str, Any]:
    f1, f2 = pair_flops(sh)
    Tc = num_compressed(T, l, d)
    pairs = sh.HQ * compressed_keys(T, l, d)
    fwd, bwd = attn_hbm(tensor_bytes(sh, T, Tc=Tc), "KC", "VC")
    return _work(pairs * (f1 + f2), fwd + bwd, fwd + bwd, "compressed attention forward + backward")


def case_work(c: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The work model of every measurement of a case (a JSON case dict); {} when none applies."""
    sh, T, p, op = SHAPES[c["shape"]], c["T"], c.get("params", {}), c["op"]
    counts = c.get("counts")
    if op == "selected":
        if not counts:
            return {}
        work = selected_work(sh, T, counts["keys"], counts["blocks"])
        if counts.get("distinct_blocks_per_tile"):  # what perfect reuse within a tile of tokens would load
            work["fwd"]["l2_bytes_tile_reuse"] = counts["distinct_blocks_per_tile"] * L_SEL * (sh.Dk + sh.Dv) * 2
            work["fwd"]["tile_reuse_note"] = (f"K/V bytes if each tile of {counts['tile']} consecutive tokens "
                                              f"loaded each distinct block once (not used for the bound)")
        return work
    if op == "window":
        return window_work(sh, T)
    if op == "dense":
        return dense_work(sh, T)
    if op == "cmp+topn":
        return cmp_topn_work(sh, T, p["l"], p["d"])
    if op == "cmp+topn+selected":
        return cmp_topn_selected_work(sh, T, p["l"], p["d"])
    if op == "nsa":
        return nsa_work(sh, T, p["l"], p["d"], counts if p.get("indices") else None)
    return {}


def bound(work: Dict[str, Any], ceil: Dict[str, Optional[float]], measured_ms: float) -> Dict[str, Any]:
    """The time each resource needs at its ceiling; the largest binds. fraction = bound / measured."""
    t = {}
    if ceil.get("flops_per_s"):
        t["tensor"] = work["flops"] / ceil["flops_per_s"] * 1e3
    if ceil.get("l2_bytes_per_s"):
        t["L2"] = work["l2_bytes"] / ceil["l2_bytes_per_s"] * 1e3
    if ceil.get("hbm_bytes_per_s"):
        t["HBM"] = work["hbm_bytes"] / ceil["hbm_bytes_per_s"] * 1e3
    if not t:
        return {"error": "no ceiling measured"}
    binding = max(t, key=t.get)
    return {"tensor_ms": t.get("tensor"), "l2_ms": t.get("L2"), "hbm_ms": t.get("HBM"), "binding": binding,
            "bound_ms": t[binding], "fraction": t[binding] / measured_ms if measured_ms else None,
            "how": "bound_ms = max(FLOPs / matmul peak, L2 bytes / L2 read bandwidth, HBM bytes / copy "
                   "bandwidth); fraction = bound_ms / measured median"}


def ceiling_rates(doc: Dict[str, Any]) -> Dict[str, Optional[float]]:
    c = doc.get("ceilings", {})
    get = lambda k, f: (c.get(k) or {}).get(f)  # noqa: E731
    tf, hbm, l2 = get("matmul_bf16", "tflops"), get("hbm_copy", "gb_per_s"), get("l2_read", "gb_per_s")
    return {"flops_per_s": tf * 1e12 if tf else None, "hbm_bytes_per_s": hbm * 1e9 if hbm else None,
            "l2_bytes_per_s": l2 * 1e9 if l2 else None}


# ---- post-processing of the JSON (pure) -------------------------------------------------------------


def find_case(doc, label: str, shape: str, T: int) -> Optional[Dict[str, Any]]:
    for c in doc.get("cases", []):
        if c["label"] == label and c["shape"] == shape and c["T"] == T:
            return c
    return None


def median_ms(c: Optional[Dict[str, Any]], meas: str) -> Optional[float]:
    if not c:
        return None
    m = c.get("results", {}).get(meas) or {}
    return m.get("median_ms")


def add_bounds(doc: Dict[str, Any]) -> None:
    rates = ceiling_rates(doc)
    for c in doc.get("cases", []):
        if c["impl"] == "ref" or c.get("skip"):
            continue
        try:
            work = case_work(c)
        except Exception as e:  # a model bug must not lose the measurements
            c["work_error"] = f"{type(e).__name__}: {e}"
            continue
        c["work"] = work
        c["bounds"] = {}
        for m, w in work.items():
            ms = median_ms(c, m)
            if ms:
                c["bounds"][m] = bound(w, rates, ms)


def add_speedups(doc: Dict[str, Any]) -> None:
    """Every case's speed-up over SDPA cuDNN and flash (same shape and T), and nsajit window's
    over FlexAttention: baseline median / case median."""
    for c in doc.get("cases", []):
        if c["op"] == "dense":
            continue
        sp = {}
        for key, label in (("vs_sdpa_cudnn", "sdpa-cudnn dense"), ("vs_sdpa_flash", "sdpa-flash dense"),
                           ("vs_flex_window", "flex window")):
            if key == "vs_flex_window" and not (c["impl"] == "nsajit" and c["op"] == "window"):
                continue
            base = find_case(doc, label, c["shape"], c["T"])
            for m in ("fwd", "fwdbwd"):
                a, b = median_ms(base, m), median_ms(c, m)
                if a and b:
                    sp.setdefault(key, {})[m] = a / b
        if sp:
            c["speedup"] = sp


def _target(what: str, measured, limit, ok: Optional[bool], unit: str, note: str = "") -> Dict[str, Any]:
    return {"id": what, "what": TARGET_TEXT[what], "measured": measured, "unit": unit, "target": limit,
            "pass": ok, "status": "not measured" if ok is None else ("PASS" if ok else "MISS"), "note": note}


def evaluate_targets(doc: Dict[str, Any], T: int = MAIN_T) -> List[Dict[str, Any]]:
    out = []
    why = f"not measured in this run (needs T = {T} and the case)"

    def at_most(tid, label, meas, limit, shape="main"):
        ms = median_ms(find_case(doc, label, shape, T), meas)
        out.append(_target(tid, ms, f"<= {limit} ms", None if ms is None else ms <= limit, "ms",
                           "" if ms is not None else why))

    def ratio(tid, num_label, num_shape, den_label, meas, limit):
        a = median_ms(find_case(doc, num_label, num_shape, T), meas)
        b = median_ms(find_case(doc, den_label, "paper" if num_shape == "paper" else "main", T), meas)
        r = a / b if a and b else None
        out.append(_target(tid, r, f">= {limit}x", None if r is None else r >= limit, "x",
                           f"{num_label} / {den_label} median time" if r is not None else why))

    at_most("selected_random_fwd", "nsajit selected random", "fwd", 20.0)
    at_most("selected_random_fwdbwd", "nsajit selected random", "fwdbwd", 60.0)
    # The issue's target: the locality-aware schedule against the per-token one, same (local) indices.
    ratio("selected_local_speedup_fwd", "nsajit selected local per-token", "main", "nsajit selected local", "fwd",
          3.0)
    ratio("selected_local_speedup_fwdbwd", "nsajit selected local per-token", "main", "nsajit selected local",
          "fwdbwd", 3.0)
    at_most("cmp64_top16_fwd", f"nsajit cmp64+top{N_SEL}", "fwd", 7.0)
    at_most("window_fwd", "nsajit window", "fwd", 2.2)
    at_most("window_fwdbwd", "nsajit window", "fwdbwd", 8.0)
    for kind, limit in (("fused", 3.0), ("local", 5.0)):
        for meas in ("fwd", "fwdbwd"):
            ratio(f"nsa_{kind}_vs_cudnn_{meas}", "sdpa-cudnn dense", "paper", f"nsajit nsa {kind}", meas, limit)
    comp = doc.get("compile") or {}
    for tid, key, limit, unit in (("compile_cold", "cold", 2.0, "s"), ("compile_cached", "cached", 0.010, "s")):
        total = (comp.get(key) or {}).get("total_s")
        err = (comp.get(key) or {}).get("error")
        out.append(_target(tid, total, f"<= {limit} s", None if total is None else total <= limit, unit,
                           "all kernels of the configuration by one nsajit_prepare call, in a fresh process"
                           if total is not None else (err or "not measured in this run")))
    return out


def finish_doc(doc: Dict[str, Any]) -> None:
    add_bounds(doc)
    add_speedups(doc)
    doc["targets"] = evaluate_targets(doc)


def _clean(x):
    """JSON without NaN/inf (strict JSON readers reject them)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(doc: Dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(_clean(doc), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown-gpu"


def default_out(device_name: str, quick: bool, now: datetime.datetime) -> Path:
    base = REPO / "bench" / "results" / f"{now:%Y-%m-%d}-{slug(device_name)}{'-quick' if quick else ''}"
    path = base.with_suffix(".json")
    if path.exists():  # never overwrite an earlier run of the same day
        path = Path(f"{base}-{now:%H%M%S}.json")
    return path


# ---- the table --------------------------------------------------------------------------------


def _fmt(x: Optional[float], spec: str = ".3g", none: str = "-") -> str:
    return none if x is None else format(x, spec)


def table_lines(doc: Dict[str, Any]) -> List[str]:
    rows = [("case", "fwd ms", "fwd+bwd ms", "bound fwd", "bound f+b", "vs cuDNN f", "vs cuDNN f+b")]
    for c in doc.get("cases", []):
        r = c.get("results", {})
        if c.get("skip"):
            rows.append((c["name"], "skipped", "", "", "", "", ""))
            continue

        def cell(m):
            if c.get("error"):
                return "ERROR"
            x = r.get(m) or {}
            return _fmt(x.get("median_ms"), ".3f") if "median_ms" in x else ("ERROR" if x.get("error") else "-")

        def bnd(m):
            b = (c.get("bounds") or {}).get(m) or {}
            return f"{b['binding']} {100 * b['fraction']:.0f}%" if b.get("fraction") is not None else "-"

        sp = (c.get("speedup") or {}).get("vs_sdpa_cudnn", {})
        rows.append((c["name"], cell("fwd"), cell("fwdbwd"), bnd("fwd"), bnd("fwdbwd"),
                     _fmt(sp.get("fwd"), ".2f") + ("x" if sp.get("fwd") else ""),
                     _fmt(sp.get("fwdbwd"), ".2f") + ("x" if sp.get("fwdbwd") else "")))
        for m in c.get("meas", []):
            if m.startswith("fwd:") and m in r:
                rows.append((f"  {m}", cell(m), "", bnd(m), "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = ["  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(row))
           for row in rows]
    out.insert(1, "-" * len(out[0]))
    ce = doc.get("ceilings", {})
    out.append("")
    out.append(f"ceilings: matmul {_fmt((ce.get('matmul_bf16') or {}).get('tflops'), '.0f')} TFLOP/s, HBM copy "
               f"{_fmt((ce.get('hbm_copy') or {}).get('gb_per_s'), '.0f')} GB/s, L2 read "
               f"{_fmt((ce.get('l2_read') or {}).get('gb_per_s'), '.0f')} GB/s")
    comp = doc.get("compile") or {}
    if comp:
        cold, cached = comp.get("cold") or {}, comp.get("cached") or {}
        seq = comp.get("cold_sequential") or {}
        out.append(f"compile of a new configuration ({comp.get('kernels', '?')} kernels): cold "
                   f"{_fmt(cold.get('total_s'), '.3f')} s (one kernel after the other: "
                   f"{_fmt(seq.get('total_s'), '.3f')} s), cached {_fmt(cached.get('total_s'), '.4f')} s"
                   + (f" (error: {cold.get('error') or cached.get('error')})"
                      if cold.get("error") or cached.get("error") else ""))
    out.append("")
    out.append("targets (T = 64k):")
    for t in doc.get("targets", []):
        out.append(f"  {t['status']:12s} {t['what']}: measured {_fmt(t['measured'], '.4g')} {t['unit']} "
                   f"(target {t['target']})")
    return out


# ---- the plot ----------------------------------------------------------------------------------


def plot(doc: Dict[str, Any], path: Path) -> str:
    """Writes the PNG; matplotlib when importable, else a plain bar chart (own PNG writer)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: F401
    except Exception:
        plot_plain(doc, path)
        return "plain PNG writer (matplotlib not importable)"
    plot_matplotlib(doc, path)
    return "matplotlib"


def _series(doc, shape: str, meas: str) -> Dict[str, List[Tuple[int, float]]]:
    out: Dict[str, List[Tuple[int, float]]] = {}
    for c in doc.get("cases", []):
        ms = median_ms(c, meas)
        if c["shape"] == shape and ms:
            out.setdefault(c["label"], []).append((c["T"], ms))
    return {k: sorted(v) for k, v in out.items()}


def plot_matplotlib(doc: Dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    labels = sorted({c["label"] for c in doc.get("cases", []) if c["shape"] == "main"})
    colors = {label: plt.get_cmap("tab20")(i % 20) for i, label in enumerate(labels)}  # same colour per label
    for ax, meas, title in ((axes[0][0], "fwd", "forward"), (axes[0][1], "fwdbwd", "forward + backward")):
        for label, pts in _series(doc, "main", meas).items():
            style = "-" if label.startswith("nsajit") else "--"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=label, color=colors[label])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_ylabel("ms (median)")
        ax.set_title(f"main config (HQ=64, H=4, D=128), {title}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    ax = axes[1][0]
    for kind in ("fused", "local"):
        for meas, style in (("fwd", "-"), ("fwdbwd", "--")):
            pts = []
            for c in doc.get("cases", []):
                if c["label"] == f"nsajit nsa {kind}" and c["shape"] == "paper":
                    s = (c.get("speedup") or {}).get("vs_sdpa_cudnn", {}).get(meas)
                    if s:
                        pts.append((c["T"], s))
            if pts:
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=f"nsa {kind} {meas}")
    ax.axhline(3, color="gray", linestyle=":", linewidth=1, label="target 3x (own selection)")
    ax.axhline(5, color="gray", linestyle="-.", linewidth=1, label="target 5x (local indices)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("T")
    ax.set_ylabel("SDPA cuDNN time / nsajit NSA time")
    ax.set_title("whole NSA (paper: Dk=192, Dv=128, l=32, d=16) vs dense causal SDPA cuDNN", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax = axes[1][1]
    bars = _fraction_bars(doc)
    ax.barh(range(len(bars)), [b[1] * 100 for b in bars], color="tab:blue")
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels([b[0] for b in bars], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("% of the binding bound (bound time / measured time)")
    ax.set_title(f"nsajit at T={_largest_T(doc)}: fraction of the bound", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    env = doc.get("env", {})
    fig.suptitle(f"nsajit NSA benchmark, {env.get('device', '?')}, torch {env.get('torch', '?')}, "
                 f"{doc.get('date', '')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _largest_T(doc) -> int:
    Ts = [c["T"] for c in doc.get("cases", []) if median_ms(c, "fwd")]
    return max(Ts) if Ts else 0


def _fraction_bars(doc) -> List[Tuple[str, float]]:
    T = _largest_T(doc)
    bars = []
    for c in doc.get("cases", []):
        if c["impl"] != "nsajit" or c["T"] != T or c["shape"] not in ("main", "paper"):
            continue
        for m in ("fwd", "fwdbwd"):
            b = (c.get("bounds") or {}).get(m) or {}
            if b.get("fraction") is not None:
                bars.append((f"{c['label']} [{c['shape']}] {m} ({b['binding']})", b["fraction"]))
    return bars


# A 5x7 bitmap font for the plain PNG (rows top to bottom, 5 bits each; text is drawn upper-case).
_FONT = {
    "0": (14, 17, 19, 21, 25, 17, 14), "1": (4, 12, 4, 4, 4, 4, 14), "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14), "4": (2, 6, 10, 18, 31, 2, 2), "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14), "7": (31, 1, 2, 4, 8, 8, 8), "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12), "A": (14, 17, 17, 17, 31, 17, 17), "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14), "D": (28, 18, 17, 17, 17, 18, 28), "E": (31, 16, 16, 30, 16, 16, 31),
    "F": (31, 16, 16, 30, 16, 16, 16), "G": (14, 17, 16, 23, 17, 17, 15), "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14), "J": (7, 2, 2, 2, 2, 18, 12), "K": (17, 18, 20, 24, 20, 18, 17),
    "L": (16, 16, 16, 16, 16, 16, 31), "M": (17, 27, 21, 21, 17, 17, 17), "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14), "P": (30, 17, 17, 30, 16, 16, 16), "Q": (14, 17, 17, 17, 21, 18, 13),
    "R": (30, 17, 17, 30, 20, 18, 17), "S": (15, 16, 16, 14, 1, 1, 30), "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14), "V": (17, 17, 17, 17, 17, 10, 4), "W": (17, 17, 17, 21, 21, 21, 10),
    "X": (17, 17, 10, 4, 10, 17, 17), "Y": (17, 17, 17, 10, 4, 4, 4), "Z": (31, 1, 2, 4, 8, 16, 31),
    ".": (0, 0, 0, 0, 0, 12, 12), "-": (0, 0, 0, 31, 0, 0, 0), "+": (0, 4, 4, 31, 4, 4, 0),
    "/": (0, 1, 2, 4, 8, 16, 0), "=": (0, 0, 31, 0, 31, 0, 0), ":": (0, 12, 12, 0, 12, 12, 0),
    "(": (2, 4, 8, 8, 8, 4, 2), ")": (8, 4, 2, 2, 2, 4, 8), "%": (24, 25, 2, 4, 8, 19, 3),
    ",": (0, 0, 0, 0, 12, 4, 8), "[": (14, 8, 8, 8, 8, 8, 14), "]": (14, 2, 2, 2, 2, 2, 14),
    "_": (0, 0, 0, 0, 0, 0, 31), "<": (2, 4, 8, 16, 8, 4, 2), ">": (8, 4, 2, 1, 2, 4, 8),
    "?": (14, 17, 1, 2, 4, 0, 4), "^": (4, 10, 17, 0, 0, 0, 0), " ": (0,) * 7,
}


class Canvas:
    """An RGB raster with rectangles and 5x7 text, saved as PNG with zlib only."""

    def __init__(self, width: int, height: int, bg=(255, 255, 255)):
        self.w, self.h = width, height
        self.px = bytearray(bytes(bg) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.w, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.h, max(y0, y1))
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(row)] = row

    def text(self, x: int, y: int, s: str, color=(0, 0, 0), scale: int = 2) -> int:
        """Draws s with its top-left at (x, y); returns the x after it."""
        for ch in s.upper():
            glyph = _FONT.get(ch, _FONT["?"])
            for r, bits in enumerate(glyph):
                for c in range(5):
                    if bits & (16 >> c):
                        self.rect(x + c * scale, y + r * scale, x + (c + 1) * scale, y + (r + 1) * scale, color)
            x += 6 * scale
        return x

    def save(self, path: Path) -> None:
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(tag: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
        Path(path).write_bytes(png)


def plot_plain(doc: Dict[str, Any], path: Path) -> None:
    """Horizontal bars (log scale) of forward and forward + backward medians at the largest T."""
    T = _largest_T(doc)
    rows = [(c, median_ms(c, "fwd"), median_ms(c, "fwdbwd")) for c in doc.get("cases", [])
            if c["T"] == T and (median_ms(c, "fwd") or median_ms(c, "fwdbwd"))]
    vals = [v for _, a, b in rows for v in (a, b) if v]
    lo, hi = (min(vals), max(vals)) if vals else (1.0, 10.0)
    lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
    hi = hi if hi > lo else lo * 10
    label_w, bar_w, row_h, top = 560, 640, 36, 90
    cv = Canvas(label_w + bar_w + 160, top + row_h * max(1, len(rows)) + 50)
    env = doc.get("env", {})
    cv.text(10, 10, f"nsajit NSA benchmark T={T}  {env.get('device', '?')}  {doc.get('date', '')}")
    cv.text(10, 34, "ms, log scale:  ")
    x = cv.text(200, 34, "  forward ", (31, 119, 180))
    cv.text(x, 34, "  forward+backward", (255, 127, 14))
    scale = lambda v: int(bar_w * math.log10(v / lo) / math.log10(hi / lo))  # noqa: E731
    decade = lo
    while decade <= hi:  # grid lines with their values
        gx = label_w + scale(decade)
        cv.rect(gx, top - 6, gx + 1, top + row_h * len(rows), (200, 200, 200))
        cv.text(gx - 10, top - 26, f"{decade:g}", (90, 90, 90), 1)
        decade *= 10
    for i, (c, f, fb) in enumerate(rows):
        y = top + i * row_h
        cv.text(10, y + 8, f"{c['label']} [{c['shape']}]", (0, 0, 0), 1)
        for j, (v, color) in enumerate(((f, (31, 119, 180)), (fb, (255, 127, 14)))):
            if v:
                yy = y + 4 + j * 14
                cv.rect(label_w, yy, label_w + max(2, scale(v)), yy + 12, color)
                cv.text(label_w + max(2, scale(v)) + 6, yy + 2, f"{v:.3g}", (0, 0, 0), 1)
    cv.save(path)


# ---- the GPU part -------------------------------------------------------------------------------
# Everything below imports torch (and nsajit) lazily, so --list, --plot-from and the arithmetic
# above run on machines without them.


def summarize(times_ms: List[float]) -> Dict[str, Any]:
    s = sorted(times_ms)
    p90 = s[min(len(s) - 1, int(math.ceil(0.9 * len(s))) - 1)]
    return {"median_ms": statistics.median(s), "min_ms": s[0], "p90_ms": p90, "mean_ms": statistics.fmean(s),
            "reps": len(s), "times_ms": [round(t, 5) for t in times_ms]}


def git_commit() -> Optional[str]:
    env = os.environ.get("NSAJIT_GIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except Exception:
        pass
    return None


def _err(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 2000 else text[:2000] + " ..."


class Inputs:
    """The inputs of one (shape, T): `nbuf` sets of q, k, v (+ gates and derived tensors), rotated
    between runs so that a run does not find its inputs in L2, one fixed dout, and the indices."""

    def __init__(self, b: "Bench", shape: Shape, T: int, seed: int):
        torch = b.torch
        self.b, self.torch, self.shape, self.T = b, torch, shape, T
        self.gen = torch.Generator(device=DEVICE)
        self.gen.manual_seed(seed)
        per_set = T * (shape.HQ * shape.Dk + shape.H * (shape.Dk + shape.Dv)) * 2
        self.nbuf = max(1, min(4, math.ceil(2 * b.l2_bytes / per_set)))
        self.sets = [self._make_set() for _ in range(self.nbuf)]
        self.dout = self.randn(1, T, shape.HQ, shape.Dv)
        self._indices: Dict[str, Any] = {}

    def randn(self, *size, requires_grad=False):
        t = self.torch.randn(*size, device=DEVICE, dtype=self.torch.bfloat16, generator=self.gen)
        return t.requires_grad_(requires_grad)

    def _make_set(self) -> SimpleNamespace:
        sh, T, torch = self.shape, self.T, self.torch
        s = SimpleNamespace(q=self.randn(1, T, sh.HQ, sh.Dk, requires_grad=True),
                            k=self.randn(1, T, sh.H, sh.Dk, requires_grad=True),
                            v=self.randn(1, T, sh.H, sh.Dv, requires_grad=True), cmp={}, lse={}, bhsd={})
        # gates in (0.01, 0.99), float32 (the kernels' gate type: no conversion in the timed call)
        s.gates = [(torch.rand(1, T, sh.HQ, device=DEVICE, generator=self.gen) * 0.98 + 0.01).requires_grad_()
                   for _ in range(3)]
        s.leaves = [s.q, s.k, s.v] + s.gates
        return s

    def set(self, i: int) -> SimpleNamespace:
        return self.sets[i % self.nbuf]

    def zero_grads(self, i: int) -> None:
        for t in self.set(i).leaves:
            t.grad = None

    # -- derived inputs, made for every set before timing --

    def compressed(self, s, l: int, d: int):
        """Mean-pooled k/v (as nsa_attention does, float32 then bf16), leaves of their own."""
        if (l, d) not in s.cmp:
            from nsajit import reference as R
            with self.torch.no_grad():
                kc = R.compress(s.k.detach().float(), l=l, d=d).to(self.torch.bfloat16)
                vc = R.compress(s.v.detach().float(), l=l, d=d).to(self.torch.bfloat16)
            s.cmp[(l, d)] = (kc.requires_grad_(), vc.requires_grad_())
            s.leaves += list(s.cmp[(l, d)])
        return s.cmp[(l, d)]

    def lse_cmp(self, s, l: int, d: int):
        if (l, d) not in s.lse:
            kc, vc = self.compressed(s, l, d)
            with self.torch.no_grad():
                s.lse[(l, d)] = self.b.nt.compressed_attention(s.q, kc, vc, l=l, d=d, return_lse=True)[1]
        return s.lse[(l, d)]

    def bhsd(self, s, expand: bool = False, pad_v: int = 0):
        """[B, heads, T, D] contiguous copies of q, k, v (SDPA's and Flex's native layout; same
        values); expand: K/V repeated G times; pad_v: v zero-padded to that head dim (for back
        ends that need Dv = Dk; the caller slices the output). Leaves of their own."""
        expand = expand and self.shape.G > 1
        key = (expand, pad_v)
        if key not in s.bhsd:
            torch = self.torch
            with torch.no_grad():
                q = s.q.detach().transpose(1, 2).contiguous()
                k, v = (t.detach().transpose(1, 2) for t in (s.k, s.v))
                if expand:
                    k, v = (t.repeat_interleave(self.shape.G, dim=1) for t in (k, v))
                if pad_v > v.shape[-1]:
                    v = torch.nn.functional.pad(v, (0, pad_v - v.shape[-1]))
                k, v = k.contiguous(), v.contiguous()
            s.bhsd[key] = tuple(t.requires_grad_() for t in (q, k, v))
            s.leaves += list(s.bhsd[key])
        return s.bhsd[key]

    # -- block indices [1, T, H, n] int32, ascending, -1 padding --

    def indices(self, kind: str):
        if kind not in self._indices:
            make = random_indices if kind == "random" else local_indices
            self._indices[kind] = make(self.torch, self.T, self.shape.H, L_SEL, N_SEL, self.gen, device=DEVICE)
        return self._indices[kind]

    def counts(self, kind: str) -> Dict[str, int]:
        return selection_counts(self.torch, self.indices(kind), L_SEL)


def _chunk_rows(H: int, nb: int) -> int:
    return max(1, (1 << 24) // max(1, H * nb))  # about 64 MB of float32 scores per chunk


def _finish_indices(torch, top, ok, nb: int, n: int):
    """Invalid picks -> -1; ascending with the -1 padding last; int32 [C, H, n]."""
    top = torch.where(ok, top, torch.full_like(top, nb))
    top = torch.sort(top, dim=-1).values
    top = torch.where(top < nb, top, torch.full_like(top, -1)).to(torch.int32)
    if top.shape[-1] < n:
        pad = torch.full(top.shape[:-1] + (n - top.shape[-1],), -1, dtype=torch.int32, device=top.device)
        top = torch.cat([top, pad], dim=-1)
    return top


def random_indices(torch, T: int, H: int, l_sel: int, n: int, gen, device: str = DEVICE):
    """Each (token, KV head) picks min(n, visible) distinct blocks uniformly among the visible
    ones (block j visible iff j * l_sel <= t): the top-n of uniform scores."""
    nb = (T + l_sel - 1) // l_sel
    out = torch.empty(1, T, H, n, dtype=torch.int32, device=device)
    j = torch.arange(nb, device=device)
    step = _chunk_rows(H, nb)
    for t0 in range(0, T, step):
        t = torch.arange(t0, min(T, t0 + step), device=device)[:, None]
        visible = (j[None, :] <= torch.div(t, l_sel, rounding_mode="floor"))[:, None, :]
        u = torch.rand(t.shape[0], H, nb, device=device, generator=gen)
        score = torch.where(visible, u, torch.full_like(u, -1.0))
        val, top = score.topk(min(n, nb), dim=-1)
        out[0, t0:t0 + t.shape[0]] = _finish_indices(torch, top, val >= 0, nb, n)
    return out


def local_indices(torch, T: int, H: int, l_sel: int, n: int, gen, device: str = DEVICE, near: int = LOCAL_NEAR,
                  far: int = LOCAL_FAR):
    """Block 0, t's own block c and c - 1, then `far` blocks drawn uniformly from further back and
    the rest from the `near` blocks before c (distinct; fewer visible -> -1 padding). As scores:
    forced 10 > chosen far 5..6 > near 2..3 > other far 0..1 (used only when short)."""
    nb = (T + l_sel - 1) // l_sel
    out = torch.empty(1, T, H, n, dtype=torch.int32, device=device)
    j = torch.arange(nb, device=device)[None, None, :]
    step = _chunk_rows(H, nb)
    for t0 in range(0, T, step):
        t = torch.arange(t0, min(T, t0 + step), device=device)
        c = torch.div(t, l_sel, rounding_mode="floor")[:, None, None]
        visible = j <= c
        forced = visible & ((j == 0) | (j >= c - 1))
        near_m = visible & ~forced & (j >= c - near)
        far_m = visible & ~forced & ~near_m
        u = torch.rand(t.shape[0], H, nb, device=device, generator=gen)
        score = torch.full_like(u, -1.0)
        score = torch.where(far_m, u, score)
        score = torch.where(near_m, 2.0 + u, score)
        score = torch.where(forced, torch.full_like(u, 10.0), score)
        if far > 0:
            fv, fi = torch.where(far_m, u, torch.full_like(u, -1.0)).topk(min(far, nb), dim=-1)
            score.scatter_add_(-1, fi, (fv >= 0).to(score.dtype) * 5.0)
        val, top = score.topk(min(n, nb), dim=-1)
        out[0, t0:t0 + t.shape[0]] = _finish_indices(torch, top, val >= 0, nb, n)
    return out


def selection_counts(torch, idx, l_sel: int, tile: int = 64) -> Dict[str, int]:
    """Visible keys and blocks of given indices summed over (t, KV head), and the distinct blocks
    per tile of `tile` consecutive tokens (what a kernel with perfect reuse in such a tile loads)."""
    _, T, H, n = idx.shape
    t = torch.arange(T, device=idx.device)[None, :, None, None]
    i = idx.long()
    valid = (i >= 0) & (i * l_sel <= t)
    keys = torch.where(valid, torch.clamp(t - i * l_sel + 1, max=l_sel), torch.zeros_like(i)).sum()
    blocks = valid.sum()
    pad = (-T) % tile
    v = torch.where(valid, i, torch.full_like(i, -1))
    if pad:
        v = torch.cat([v, torch.full((1, pad, H, n), -1, dtype=v.dtype, device=v.device)], dim=1)
    v = v.reshape(-1, tile, H, n).permute(0, 2, 1, 3).reshape(-1, tile * n)
    v = torch.sort(v, dim=-1).values
    distinct = ((v[:, 1:] != v[:, :-1]) & (v[:, 1:] >= 0)).sum() + (v[:, 0] >= 0).sum()
    return {"keys": int(keys), "blocks": int(blocks), "distinct_blocks_per_tile": int(distinct), "tile": tile}


class Bench:
    def __init__(self, s: SimpleNamespace, out: Path):
        import torch
        self.torch, self.s, self.out = torch, s, out
        self.t_start = time.perf_counter()
        self.gpu_broken: Optional[str] = None
        props = torch.cuda.get_device_properties(0)
        self.l2_bytes = getattr(props, "L2_cache_size", 0) or 50 * KI * KI
        self.nt = self.R = None
        self.nsajit_error: Optional[str] = None
        self._flex = None
        self._block_masks: Dict[int, Any] = {}
        self.doc = self._header(props)
        self._load_nsajit()
        self.step, self.total = 0, 0

    # -- bookkeeping --

    def _header(self, props) -> Dict[str, Any]:
        torch = self.torch
        env = {"device": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
               "sm_count": props.multi_processor_count, "l2_bytes": self.l2_bytes,
               "memory_bytes": props.total_memory, "torch": torch.__version__, "cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
               "host": platform.node(), "git_commit": git_commit(),
               "variables": {k: os.environ.get(k) for k in ("NSAJIT_LIBRARY", "NSAJIT_CACHE_DIR", "NSAJIT_BUILD_DIR",
                                                           "CUDA_VISIBLE_DEVICES")}}
        try:
            import triton
            env["triton"] = triton.__version__
        except Exception as e:
            env["triton"] = f"unavailable: {_err(e)}"
        return {"schema": SCHEMA, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "argv": sys.argv, "env": env, "settings": vars(self.s).copy(),
                "config": {"dtype": "bf16", "B": 1, "l_sel": L_SEL, "n": N_SEL, "w": WINDOW,
                           "compression": {"main": CMP_MAIN, "paper": CMP_PAPER},
                           "shapes": {k: v.as_dict() for k, v in SHAPES.items()},
                           "local_indices": f"block 0, t's block and the one before, {LOCAL_FAR} blocks drawn "
                                            f"uniformly from further back, the rest from the {LOCAL_NEAR} "
                                            f"blocks before t's block; distinct, ascending, -1 padded",
                           "random_indices": "min(n, visible) distinct visible blocks drawn uniformly "
                                             "(block j visible iff j * l' <= t), ascending, -1 padded"},
                "method": {
                    "timing": "CUDA events around each call, calls queued back to back (no host sync between "
                              "them), after a first call (timed on the wall clock, includes JIT/compile) and "
                              "warm-up; repetitions adapt to --target-s within [--min-reps, --max-reps]; "
                              "median, min, p90",
                    "inputs": "fresh random normal q, k, v (uniform gates in (0.01, 0.99)) per (shape, T), "
                              "seeded; several sets rotated between calls when one set is smaller than 2x L2; "
                              "SDPA and Flex get [B, heads, T, D] contiguous copies of the same values",
                    "fwd": "under torch.no_grad()",
                    "fwdbwd": "forward, then torch.autograd.backward(out, dout) with a fixed random dout: the "
                              "gradient of loss = (out * dout).sum() without timing the extra elementwise pass; "
                              "gradients of q, k, v (and gates, k_cmp, v_cmp where inputs) are reset to None "
                              "between calls",
                    "nsajit": "nsajit.torch, ungated branches; nsa_attention with check_gate_range=False (the "
                              "range check synchronises with the GPU)",
                    "reference": "nsajit.reference on the same bf16 inputs, checkpoint=True for backward"},
                "reference_figures": GPU_MD_FIGURES, "cases": []}

    def _load_nsajit(self) -> None:
        info = {}
        try:
            import nsajit
            from nsajit import reference as R
            self.R = R
            info["library"] = nsajit.library().path
            info["version"] = nsajit.version()
            info["compiler_version"] = nsajit.compiler_version()
            info["has_backward"] = nsajit.has_backward()
            info["has_select_topn"] = nsajit.has_select_topn()
            info["has_compress"] = nsajit.has_compress() if hasattr(nsajit, "has_compress") else False
            info["cache"] = nsajit.cache_info()
            from nsajit import torch as nt
            self.nt = nt
        except Exception as e:
            self.nsajit_error = _err(e)
            info["error"] = self.nsajit_error
        self.doc["env"]["nsajit"] = info

    def save(self) -> None:
        doc = json.loads(json.dumps(_clean(self.doc)))  # a copy: post-processing must not touch the run's
        finish_doc(doc)
        doc["elapsed_s"] = time.perf_counter() - self.t_start
        write_json(doc, self.out)
        self.final = doc

    def progress(self, what: str, text: str) -> None:
        self.step += 1
        print(f"[{self.step}/{self.total}] {what} ... {text}", flush=True)

    def elapsed_min(self) -> float:
        return (time.perf_counter() - self.t_start) / 60

    # -- timing --

    def time_calls(self, fn: Callable[[int], Any], pre: Callable[[int], None] = lambda i: None,
                   reps: Optional[int] = None) -> Dict[str, Any]:
        """First call (wall clock, with JIT), warm-up, then reps timed with CUDA events."""
        torch, s = self.torch, self.s
        pre(0)
        t0 = time.perf_counter()
        fn(0)
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        if reps is None:
            for i in range(1, 1 + s.warmup):
                pre(i)
                fn(i)
            est = self._event_times(fn, pre, 2, start=1 + s.warmup)
            per = max(statistics.median(est), 1e-3) / 1e3
            reps = int(min(s.max_reps, max(s.min_reps, math.ceil(s.target_s / per))))
        times = self._event_times(fn, pre, reps, start=0)
        out = summarize(times)
        out["first_call_s"] = first
        return out

    def _event_times(self, fn, pre, reps: int, start: int) -> List[float]:
        torch = self.torch
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for i, (a, b) in enumerate(ev):
            pre(start + i)
            a.record()
            fn(start + i)
            b.record()
        torch.cuda.synchronize()
        return [a.elapsed_time(b) for a, b in ev]

    def after_error(self) -> None:
        """Frees memory; a failing synchronize means the CUDA context is gone: stop GPU work."""
        gc.collect()
        try:
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()
        except Exception as e:
            self.gpu_broken = _err(e)

    # -- ceilings --

    def ceilings(self) -> None:
        out = self.doc.setdefault("ceilings", {})
        for name, fn in (("matmul_bf16", self._ceil_matmul), ("hbm_copy", self._ceil_copy),
                         ("l2_read", self._ceil_l2)):
            try:
                out[name] = fn()
                val = out[name].get("tflops") or out[name].get("gb_per_s")
                unit = "TFLOP/s" if "tflops" in out[name] else "GB/s"
                self.progress(f"ceiling {name}", f"{val:.0f} {unit} ({out[name]['median_ms']:.3f} ms)")
            except Exception as e:
                out[name] = {"error": _err(e)}
                self.progress(f"ceiling {name}", f"ERROR {_err(e)}")
                self.after_error()
        self.torch.cuda.empty_cache()

    def _ceil_matmul(self) -> Dict[str, Any]:
        torch, N = self.torch, 8192
        a, b = (torch.randn(N, N, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
        c = torch.empty(N, N, device=DEVICE, dtype=torch.bfloat16)
        r = self.time_calls(lambda i: torch.mm(a, b, out=c))
        r["tflops"] = 2 * N ** 3 / (r["median_ms"] / 1e3) / 1e12
        r["how"] = "torch.mm of two bf16 8192x8192 matrices; 2 * 8192^3 FLOPs / median time"
        return r

    def _ceil_copy(self) -> Dict[str, Any]:
        torch = self.torch
        src = torch.randn(KI ** 3 // 2, device=DEVICE, dtype=torch.bfloat16)  # 1 GiB
        dst = torch.empty_like(src)
        r = self.time_calls(lambda i: dst.copy_(src))
        nbytes = src.numel() * 2
        r["gb_per_s"] = 2 * nbytes / (r["median_ms"] / 1e3) / 1e9
        r["how"] = "Tensor.copy_ of 1 GiB device to device; bytes = read + write = 2 GiB, / median time"
        return r

    def _ceil_l2(self) -> Dict[str, Any]:
        try:
            return self._ceil_l2_triton()
        except Exception as e:
            r = self._ceil_l2_torch()
            r["triton_error"] = _err(e)
            return r

    def _ceil_l2_triton(self) -> Dict[str, Any]:
        torch = self.torch
        kernel = _l2_read_kernel()
        block, nbytes = 4096, 24 * KI * KI  # 16 KiB chunks of a 24 MiB float32 buffer
        x = torch.randn(nbytes // 4, device=DEVICE, dtype=torch.float32)
        n_chunks = x.numel() // block
        nprog = 4 * torch.cuda.get_device_properties(0).multi_processor_count  # all resident at once
        iters = 2048
        part = torch.empty(nprog * block, device=DEVICE, dtype=torch.float32)
        r = self.time_calls(lambda i: kernel[(nprog,)](x, part, n_chunks, iters, BLOCK=block, num_warps=8))
        moved = nprog * iters * block * 4
        r["gb_per_s"] = moved / (r["median_ms"] / 1e3) / 1e9
        r["how"] = (f"Triton kernel: {nprog} programs each read {iters} chunks of 16 KiB (ld.global.cg, "
                    f"bypassing L1), sweeping a 24 MiB float32 buffer that stays in L2; bytes read "
                    f"({moved}) / median time")
        return r

    def _ceil_l2_torch(self) -> Dict[str, Any]:
        torch = self.torch
        x = torch.randn(24 * KI * KI // 4, device=DEVICE, dtype=torch.float32)
        loops = 100

        def run(i):
            for _ in range(loops):
                x.sum()

        r = self.time_calls(run)
        r["gb_per_s"] = loops * x.numel() * 4 / (r["median_ms"] / 1e3) / 1e9
        r["how"] = ("fallback: 100 torch.sum over a 24 MiB float32 buffer (L2-resident) back to back; "
                    "includes launch gaps, so a LOW estimate of L2 bandwidth")
        return r

    # -- the compile time of a new configuration --

    def compile_test(self) -> None:
        cfg = {"dk": 192, "dv": 128, "h": 4, "g": 16, "l": CMP_PAPER[0], "d": CMP_PAPER[1], "l_sel": L_SEL,
               "n": N_SEL, "w": WINDOW}
        tmp = tempfile.mkdtemp(prefix="nsajit-bench-compile-")
        env = dict(os.environ, NSAJIT_CACHE_DIR=os.path.join(tmp, "nsajit"),
                   CUDA_CACHE_PATH=os.path.join(tmp, "cuda"), NSAJIT_VERBOSE="1")
        out = {"config": cfg, "how": "every kernel of the configuration (forward, backward pre/dq/dkdv of the "
                                     "three branches, the fused top-n, the pooling of k and v forward and "
                                     "backward) in a fresh subprocess: cold = empty NSAJIT_CACHE_DIR and "
                                     "CUDA_CACHE_PATH (generate PTX, driver JIT, load), by one nsajit_prepare call "
                                     "(Context.prepare: the kernels on a thread pool, NSAJIT_COMPILE_THREADS "
                                     "default); cached = a second subprocess on the same directories (PTX from "
                                     "nsajit's disk cache, SASS from the driver's cache); cold_sequential = "
                                     "Context.compile of one kernel after the other in fresh directories (the "
                                     "sum of the first calls). codegen_ms is nsajit's own 'compiled ... in N ms' "
                                     "log summed over kernels (PTX generation only)"}
        env_seq = dict(env, NSAJIT_CACHE_DIR=os.path.join(tmp, "nsajit-seq"), CUDA_CACHE_PATH=os.path.join(tmp, "cuda-seq"))
        try:
            for key, mode, e in (("cold", "prepare", env), ("cached", "prepare", env),
                                 ("cold_sequential", "sequential", env_seq)):
                out[key] = run_compile_child(dict(cfg, mode=mode), e)
                r = out[key]
                text = (f"ERROR {r['error']}" if r.get("error") else
                        f"{r['total_s']:.3f} s for {len(r['kernels'])} kernels (max {r['max_kernel_s']:.3f} s, "
                        f"codegen {r['codegen_ms']:.0f} ms; cache {r.get('cache_stats')})")
                self.progress(f"compile {key} [paper config]", text)
            out["kernels"] = (out.get("cold") or {}).get("prepared") or \
                len((out.get("cold_sequential") or {}).get("kernels", []))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.doc["compile"] = out

    # -- the cases --

    def run_cases(self, cases: List[Case]) -> None:
        groups: Dict[Tuple[str, int], List[Case]] = {}
        for c in cases:
            groups.setdefault((c.shape, c.T), []).append(c)
        for (shape, T), group in groups.items():
            self._run_group(SHAPES[shape], T, group)

    def _run_group(self, shape: Shape, T: int, group: List[Case]) -> None:
        torch, inp = self.torch, None
        try:
            over_budget = self.s.max_minutes and self.elapsed_min() > self.s.max_minutes
            if any(not c.skip for c in group) and not self.gpu_broken and not over_budget:
                inp = Inputs(self, shape, T, self.s.seed + T + 7919 * list(SHAPES).index(shape.name))
        except Exception as e:
            err = _err(e)
            for c in group:
                c.skip = c.skip or f"making the inputs failed: {err}"
            self.after_error()
        for c in group:
            self._run_case(c, inp)
            self.save()
        del inp
        gc.collect()
        torch.cuda.empty_cache()

    def _run_case(self, c: Case, inp: Optional[Inputs]) -> None:
        rec = {"name": c.name, "label": c.label, "impl": c.impl, "op": c.op, "shape": c.shape, "T": c.T,
               "params": c.params, "meas": list(c.meas), "shape_dims": SHAPES[c.shape].as_dict(), "results": {}}
        self.doc["cases"].append(rec)
        reason = c.skip or self._skip_reason(c)
        if reason:
            rec["skip"] = reason
            for m in c.meas:
                self.progress(f"{c.name} {m}", f"SKIPPED ({reason})")
            return
        try:
            if c.impl == "flex":
                try:
                    self.flex()
                except Exception as e:  # no FlexAttention in this torch: skip visibly
                    rec["skip"] = f"FlexAttention unavailable: {_err(e)}"
                    for m in c.meas:
                        self.progress(f"{c.name} {m}", f"SKIPPED ({rec['skip']})")
                    return
            fns = self._builders(c, inp)
            if c.op in ("selected", "nsa") and c.params.get("indices") and c.impl != "ref":
                rec["counts"] = inp.counts(c.params["indices"])
            rec["nbuf"] = inp.nbuf
            if c.impl == "nsajit":
                rec["tiles"] = self.tiles(c)
        except Exception as e:
            rec["error"] = _err(e)
            for m in c.meas:
                self.progress(f"{c.name} {m}", f"ERROR {rec['error']}")
            self.after_error()
            return
        for m in c.meas:
            rec["results"][m] = r = self._measure(c, inp, fns[m], m)
            if "error" in r:
                self.progress(f"{c.name} {m}", f"ERROR {r['error']}")
            else:
                extra = f"; variant {r['variant']}" if r.get("variant") else ""
                self.progress(f"{c.name} {m}", f"{r['median_ms']:.3f} ms (median of {r['reps']}, min "
                                              f"{r['min_ms']:.3f}, p90 {r['p90_ms']:.3f}; first call "
                                              f"{r['first_call_s']:.2f} s{extra})")
        if c.impl == "flex":  # the first call of each grad mode compiles (torch.compile)
            rec["block_mask_s"] = self._block_masks.get(c.T, (None, None))[1]
            rec["compile_s"] = {m: (rec["results"].get(m) or {}).get("first_call_s") for m in c.meas}

    def tiles(self, c: Case) -> Dict[str, Any]:
        """The forward tile each branch of the case launches with, and whether it comes from the
        per-GPU tuning database (numbers depend on it). Best effort: {"error": ...} otherwise."""
        out: Dict[str, Any] = {}
        nt, C, sh, p = self.nt, self.nt._capi, SHAPES[c.shape], c.params
        branches = {"selected": ["selected"], "window": ["window"], "cmp+topn": ["compressed"],
                    "cmp+topn+selected": ["compressed", "selected"],
                    "nsa": ["compressed", "selected", "window"]}.get(c.op, [])
        kw = {"compressed": dict(l=p.get("l", 0), d=p.get("d", 0)), "selected": dict(l_sel=L_SEL, n=N_SEL),
              "window": dict(w=WINDOW)}
        for name in branches:
            try:
                b = C.Branch[name.upper()]
                cfg = nt._make_config(b, self.torch.bfloat16, sh.Dk, sh.Dv, sh.H, sh.G, **kw[name])
                out[name] = nt.context().tuned_tile(cfg, b, 1, c.T)
            except Exception as e:
                out[name] = {"error": _err(e)}
        return out

    def _skip_reason(self, c: Case) -> Optional[str]:
        if self.gpu_broken:
            return f"an earlier CUDA error left the context unusable: {self.gpu_broken}"
        if self.s.max_minutes and self.elapsed_min() > self.s.max_minutes:
            return f"time budget: --max-minutes {self.s.max_minutes} passed"
        if c.impl in ("nsajit", "ref") and self.R is None:
            return f"nsajit not importable: {self.nsajit_error}"
        if c.impl == "nsajit" and self.nt is None:
            return f"libnsajit / nsajit.torch unavailable: {self.nsajit_error}"
        return None

    def _measure(self, c: Case, inp: Inputs, variants, meas: str) -> Dict[str, Any]:
        """Times one measurement; `variants` = [(name, f, prepare)] tried in order (the first that
        runs wins); prepare() makes its derived inputs for every rotated set before timing."""
        errors = {}
        for vname, f, prepare in variants:
            run = self._as_call(inp, f, meas)
            pre = inp.zero_grads if meas == "fwdbwd" else (lambda i: None)
            try:
                if prepare:
                    prepare()
                r = self.time_calls(run, pre, reps=self.s.ref_reps if c.impl == "ref" else None)
                if self.s.profile:
                    r["kernels"] = self.kernel_times(run, pre)
                if vname:
                    r["variant"] = vname
                if errors:
                    r["variant_errors"] = errors
                return r
            except Exception as e:
                errors[vname or "default"] = _err(e)
                self.after_error()
                if self.gpu_broken:
                    break
        out = {"error": "; ".join(f"{k}: {v}" for k, v in errors.items()) if len(errors) > 1
               else next(iter(errors.values()))}
        return out

    def kernel_times(self, run: Callable[[int], None], pre: Callable[[int], None]) -> Dict[str, Any]:
        """GPU ms of each kernel (summed over its launches) in one more call of `run`, from
        torch.profiler (CUPTI); {"error": ...} when the profiler is unavailable."""
        torch = self.torch
        try:
            from torch.profiler import ProfilerActivity, profile
            pre(0)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                run(0)
                torch.cuda.synchronize()
            out: Dict[str, float] = {}
            for e in prof.key_averages():
                us = getattr(e, "device_time_total", None)
                if us is None:
                    us = getattr(e, "cuda_time_total", 0.0)
                if us and us > 0:
                    out[e.key[:80]] = round(us / 1000.0, 4)
            top = sorted(out.items(), key=lambda kv: -kv[1])
            print("    kernels: " + "; ".join(f"{k} {v:.3f}" for k, v in top[:8]), flush=True)
            return dict(top)
        except Exception as e:
            return {"error": _err(e)}

    def _as_call(self, inp: Inputs, f, meas: str) -> Callable[[int], None]:
        torch = self.torch
        if meas == "fwdbwd":
            def run(i):
                outs = f(inp.set(i), True)
                outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
                torch.autograd.backward(outs, [inp.dout] * len(outs))
        else:
            def run(i):
                with torch.no_grad():
                    f(inp.set(i), False)
        return run

    def _builders(self, c: Case, inp: Inputs) -> Dict[str, List[Tuple[str, Callable]]]:
        """meas -> [(variant name, f(set, train))]."""
        if c.impl == "nsajit":
            fns = self._nsajit_fns(c, inp)
        elif c.impl == "ref":
            fns = self._ref_fns(c, inp)
        elif c.impl.startswith("sdpa"):
            return self._sdpa_fns(c, inp)
        elif c.impl == "flex":
            fns = self._flex_fns(c, inp)
        else:
            raise ValueError(f"unknown impl {c.impl}")
        return {m: [("", fns[m], None)] for m in c.meas}

    def _nsajit_fns(self, c: Case, inp: Inputs) -> Dict[str, Callable]:
        nt, p = self.nt, c.params
        if c.op == "selected":
            idx = inp.indices(p["indices"])
            tokens = p.get("tokens_per_cta")  # None: nsajit's default (or tuned) schedule
            f = lambda s, train: nt.selected_attention(s.q, s.k, s.v, idx, l_sel=L_SEL,  # noqa: E731
                                                       tokens_per_cta=tokens)
            return {"fwd": f, "fwdbwd": f}
        if c.op == "window":
            f = lambda s, train: nt.window_attention(s.q, s.k, s.v, w=WINDOW)  # noqa: E731
            return {"fwd": f, "fwdbwd": f}
        l, d = p.get("l"), p.get("d")
        if c.op in ("cmp+topn", "cmp+topn+selected"):
            for s in inp.sets:  # pooled k/v (PyTorch) made before any timing
                inp.compressed(s, l, d)
        if c.op == "cmp+topn":
            lse_error = None
            if "fwd:topn" in c.meas:
                try:  # the top-n alone reads the compressed branch's lse: made outside the timing
                    for s in inp.sets:
                        inp.lse_cmp(s, l, d)
                except Exception as e:
                    lse_error = _err(e)
                    self.after_error()

            def topn_only(s, train):
                if lse_error:
                    raise RuntimeError(f"computing lse_cmp for the top-n failed: {lse_error}")
                return nt.select_topn(s.q, s.cmp[(l, d)][0], s.lse[(l, d)], l=l, d=d, l_sel=L_SEL, n=N_SEL)

            def both(s, train):
                kc, vc = s.cmp[(l, d)]
                o, lse = nt.compressed_attention(s.q, kc, vc, l=l, d=d, return_lse=True)
                nt.select_topn(s.q, kc, lse, l=l, d=d, l_sel=L_SEL, n=N_SEL)
                return o

            def pool_only(s, train):
                return [nt.compress(s.k, l=l, d=d), nt.compress(s.v, l=l, d=d)]

            return {"fwd": both, "fwdbwd": both, "fwd:pool": pool_only,
                    "fwd:cmp": lambda s, train: nt.compressed_attention(s.q, *s.cmp[(l, d)], l=l, d=d),
                    "fwd:topn": topn_only}
        if c.op == "cmp+topn+selected":
            pooled = hasattr(nt, "compress")  # pool k/v on nsajit inside the timing, as the fla figure does
            c.params["pooling"] = "nsajit.torch.compress (timed)" if pooled else "pre-pooled in PyTorch (not timed)"

            def pipeline(s, train):
                kc, vc = ((nt.compress(s.k, l=l, d=d), nt.compress(s.v, l=l, d=d)) if pooled else s.cmp[(l, d)])
                o_c, lse = nt.compressed_attention(s.q, kc, vc, l=l, d=d, return_lse=True)
                idx = nt.select_topn(s.q, kc, lse, l=l, d=d, l_sel=L_SEL, n=N_SEL)
                return [o_c, nt.selected_attention(s.q, s.k, s.v, idx, l_sel=L_SEL)]

            return {"fwd": pipeline, "fwdbwd": pipeline}
        if c.op == "nsa":
            idx = inp.indices(p["indices"]) if p.get("indices") else None
            kw = {}
            if "compression" in inspect.signature(nt.nsa_attention).parameters:
                kw["compression"] = "kernel"  # pool k/v on nsajit's kernels (the default; said explicitly)
            c.params["compression"] = kw.get("compression", "PyTorch (this nsajit has no compression kernels)")

            def layer(s, train):  # compresses k/v itself, as a model calls it
                return nt.nsa_attention(s.q, s.k, s.v, *s.gates, l=l, d=d, l_sel=L_SEL, n=N_SEL, w=WINDOW,
                                        indices=idx, check_gate_range=False, **kw)

            return {"fwd": layer, "fwdbwd": layer}
        raise ValueError(f"no nsajit op {c.op}")

    def _ref_fns(self, c: Case, inp: Inputs) -> Dict[str, Callable]:
        R, p = self.R, c.params
        if c.op == "selected":
            idx = inp.indices(p["indices"])
            f = lambda s, train: R.selected_attention(s.q, s.k, s.v, idx, l_sel=L_SEL, checkpoint=train)[0]  # noqa
        elif c.op == "window":
            f = lambda s, train: R.window_attention(s.q, s.k, s.v, w=WINDOW, checkpoint=train)[0]  # noqa: E731
        elif c.op == "cmp+topn":
            l, d = p["l"], p["d"]
            for s in inp.sets:
                inp.compressed(s, l, d)

            def f(s, train):
                kc, vc = s.cmp[(l, d)]
                o = R.compressed_attention(s.q, kc, vc, l=l, d=d, checkpoint=train)[0]
                R.select_blocks(s.q.detach(), kc.detach(), l=l, d=d, l_sel=L_SEL, n=N_SEL)
                return o
        elif c.op == "nsa":
            l, d = p["l"], p["d"]
            f = lambda s, train: R.nsa_attention(s.q, s.k, s.v, *s.gates, l=l, d=d, l_sel=L_SEL, n=N_SEL,  # noqa
                                                 w=WINDOW, checkpoint=train)
        else:
            raise ValueError(f"no reference op {c.op}")
        return {"fwd": f, "fwdbwd": f}

    def _sdpa_fns(self, c: Case, inp: Inputs) -> Dict[str, List[Tuple[str, Callable, Optional[Callable]]]]:
        """Variants tried in order: GQA through enable_gqa, K/V expanded to HQ heads, and where
        Dv != Dk the same with v zero-padded to Dk (a back end may need equal head dims)."""
        torch = self.torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backend = SDPBackend.FLASH_ATTENTION if c.impl == "sdpa-flash" else SDPBackend.CUDNN_ATTENTION
        sdpa = torch.nn.functional.scaled_dot_product_attention
        sh = inp.shape

        def variant(expand: bool, pad: int):
            def f(s, train):
                q, k, v = inp.bhsd(s, expand=expand, pad_v=pad)
                with sdpa_kernel([backend]):
                    o = sdpa(q, k, v, is_causal=True, enable_gqa=(sh.G > 1 and not expand))
                return (o[..., :sh.Dv] if pad else o).transpose(1, 2)

            def prepare():
                for s in inp.sets:
                    inp.bhsd(s, expand=expand, pad_v=pad)

            return f, prepare

        pads = [0] + ([sh.Dk] if sh.Dv != sh.Dk else [])
        variants = []
        for pad in pads:
            tail = f", v zero-padded to Dk = {pad} (output sliced)" if pad else ""
            if sh.G > 1:
                variants.append(("enable_gqa" + tail, *variant(False, pad)))
                variants.append(("K/V expanded to HQ heads" + tail, *variant(True, pad)))
            else:
                variants.append((tail.lstrip(", "), *variant(False, pad)))
        return {m: variants for m in c.meas}

    def _flex_fns(self, c: Case, inp: Inputs) -> Dict[str, Callable]:
        flex = self.flex()
        bm = self.block_mask(c.T)
        for s in inp.sets:  # derived inputs before any timing
            inp.bhsd(s)
        G = inp.shape.G
        f = lambda s, train: flex(*inp.bhsd(s), block_mask=bm, enable_gqa=G > 1).transpose(1, 2)  # noqa: E731
        return {"fwd": f, "fwdbwd": f}

    def flex(self):
        if self._flex is None:
            torch = self.torch
            from torch.nn.attention.flex_attention import flex_attention  # ImportError: skip visibly
            for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                         "accumulated_recompile_limit"):
                if hasattr(torch._dynamo.config, name):  # one graph per T and grad mode
                    setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
            self._flex = torch.compile(flex_attention, dynamic=False)
        return self._flex

    def block_mask(self, T: int):
        if T not in self._block_masks:
            from torch.nn.attention.flex_attention import create_block_mask

            def sliding(b, h, q_idx, kv_idx):
                return (q_idx >= kv_idx) & (q_idx - kv_idx < WINDOW)

            t0 = time.perf_counter()
            try:
                bm = create_block_mask(sliding, B=None, H=None, Q_LEN=T, KV_LEN=T, device=DEVICE, _compile=True)
            except TypeError:  # no _compile argument in this torch
                bm = create_block_mask(sliding, B=None, H=None, Q_LEN=T, KV_LEN=T, device=DEVICE)
            self.torch.cuda.synchronize()
            self._block_masks[T] = (bm, time.perf_counter() - t0)
        return self._block_masks[T][0]


_L2_KERNEL = None
tl = triton = None  # set by _l2_read_kernel (the Triton kernel resolves them as globals)


def _l2_read_kernel():
    """A Triton kernel reading chunks of an L2-resident buffer (built on first use)."""
    global _L2_KERNEL, tl, triton
    if _L2_KERNEL is None:
        import triton
        import triton.language as tl

        @triton.jit
        def l2_read(x_ptr, out_ptr, n_chunks, iters, BLOCK: tl.constexpr):
            pid = tl.program_id(0)
            nprog = tl.num_programs(0)
            offs = tl.arange(0, BLOCK)
            acc = tl.zeros([BLOCK], dtype=tl.float32)
            for i in range(iters):
                chunk = (pid + i * nprog) % n_chunks
                acc += tl.load(x_ptr + chunk * BLOCK + offs, cache_modifier=".cg")
            tl.store(out_ptr + pid * BLOCK + offs, acc)

        _L2_KERNEL = l2_read
    return _L2_KERNEL


# ---- the compile subprocess ---------------------------------------------------------------------

_COMPILE_TAG = "NSAJIT_COMPILE_RESULT "


def compile_plan(C, cfg: Dict[str, int]) -> List[Tuple[str, str, Any]]:
    """(branch, pass, nsajit_config) of every kernel nsajit.torch.nsa_attention runs, each config
    built as nsajit.torch builds it (unused fields left at their defaults)."""
    base = dict(dtype=int(C.DType.BF16), head_dim_qk=cfg["dk"], head_dim_v=cfg["dv"], num_kv_heads=cfg["h"],
                group=cfg["g"], scale=0.0, slc_initial=1, slc_local=2)
    cmp_cfg = C.make_config(**base, cmp_block=cfg["l"], cmp_stride=cfg["d"])
    sel_cfg = C.make_config(**base, slc_block=cfg["l_sel"], slc_count=cfg["n"])
    win_cfg = C.make_config(**base, window=cfg["w"])
    topn_cfg = C.make_config(**dict(base, head_dim_v=cfg["dk"]), cmp_block=cfg["l"], cmp_stride=cfg["d"],
                             slc_block=cfg["l_sel"], slc_count=cfg["n"])
    passes = ("FORWARD", "BACKWARD_PRE", "BACKWARD_DQ", "BACKWARD_DKDV")
    plan = [(b, p, c) for b, c in (("compressed", cmp_cfg), ("selected", sel_cfg), ("window", win_cfg))
            for p in passes]
    plan.append(("compressed", "TOPN", topn_cfg))
    if hasattr(C.KernelPass, "POOL"):  # the compression of k (dim Dk) and v (dim Dv), forward and backward
        for dim in sorted({cfg["dk"], cfg["dv"]}):
            pool_cfg = C.make_config(**dict(base, head_dim_qk=dim, head_dim_v=dim, group=1), cmp_block=cfg["l"],
                                     cmp_stride=cfg["d"])
            plan += [("compressed", "POOL", pool_cfg), ("compressed", "POOL_BWD", pool_cfg)]
    return plan


def compile_child(cfg_json: str) -> int:
    """In a fresh process: load libnsajit, create a context, compile every kernel of the config
    (first call of each), print one JSON line."""
    res: Dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        from nsajit import _capi as C
        C.library()
        res["load_library_s"] = time.perf_counter() - t0
        logs: List[str] = []
        C.set_log_callback(lambda level, msg: logs.append(msg))
        t0 = time.perf_counter()
        ctx = C.Context(0)
        res["context_s"] = time.perf_counter() - t0
        kernels = []
        plan_cfg = json.loads(cfg_json)
        mode = plan_cfg.pop("mode", "sequential")
        if mode == "prepare" and hasattr(ctx, "prepare"):
            full = C.make_config(dtype=int(C.DType.BF16), head_dim_qk=plan_cfg["dk"], head_dim_v=plan_cfg["dv"],
                                 num_kv_heads=plan_cfg["h"], group=plan_cfg["g"], scale=0.0, slc_initial=1,
                                 slc_local=2, cmp_block=plan_cfg["l"], cmp_stride=plan_cfg["d"],
                                 slc_block=plan_cfg["l_sel"], slc_count=plan_cfg["n"], window=plan_cfg["w"])
            t0 = time.perf_counter()
            try:
                res["prepared"] = ctx.prepare(full, 15)
                err = None
            except Exception as e:
                err = _err(e)
            kernels.append({"branch": "all", "pass": "prepare", "s": time.perf_counter() - t0, "error": err})
        plan = compile_plan(C, plan_cfg) if not kernels else []
        res["mode"] = mode if kernels or mode == "sequential" else "sequential (no prepare in this library)"
        for branch, kpass, cfg in plan:
            t0 = time.perf_counter()
            try:
                ctx.compile(cfg, branch, C.KernelPass[kpass])
                err = None
            except Exception as e:
                err = _err(e)
            kernels.append({"branch": branch, "pass": kpass, "s": time.perf_counter() - t0, "error": err})
        res["kernels"] = kernels
        res["cache_stats"] = ctx.cache_stats()
        res["cache_info"] = C.cache_info()
        res["codegen_ms"] = sum(float(m.group(1)) for m in (re.search(r"compiled .* in (\d+(?:\.\d+)?) ms", x)
                                                             for x in logs) if m)
        res["log_lines"] = len(logs)
    except Exception as e:
        res["error"] = _err(e)
    print(_COMPILE_TAG + json.dumps(res), flush=True)
    return 0


def run_compile_child(cfg: Dict[str, int], env: Dict[str, str], timeout: int = 300) -> Dict[str, Any]:
    try:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--compile-child", json.dumps(cfg)],
                           env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    line = next((x for x in p.stdout.splitlines() if x.startswith(_COMPILE_TAG)), None)
    if line is None:
        return {"error": f"exit {p.returncode}, no result; stderr: {p.stderr[-1500:]}"}
    r = json.loads(line[len(_COMPILE_TAG):])
    ks = r.get("kernels") or []
    failed = [f"{k['branch']}/{k['pass']}: {k['error']}" for k in ks if k.get("error")]
    if failed and "error" not in r:
        r["error"] = "; ".join(failed)
    if ks and not failed:
        r["total_s"] = sum(k["s"] for k in ks)
        r["max_kernel_s"] = max(k["s"] for k in ks)
    else:
        r.setdefault("total_s", None)
        r.setdefault("max_kernel_s", None)
    r.setdefault("codegen_ms", 0.0)
    return r


# ---- main -----------------------------------------------------------------------------------------


def run_benchmark(s, args) -> int:
    try:
        import torch
    except Exception as e:
        print(f"bench_nsa: torch is not importable ({_err(e)}): nothing measured", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("bench_nsa: no CUDA device: nothing measured (the plan: --list)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0)
    out = Path(args.out) if args.out else default_out(name, s.quick, datetime.datetime.now())
    cases = plan_cases(s)
    b = Bench(s, out)
    b.total = 3 + (3 if s.compile_test and matches("compile", s.only) else 0) + sum(len(c.meas) for c in cases)
    print(f"bench_nsa: {name}, torch {torch.__version__}, nsajit "
          f"{b.doc['env']['nsajit'].get('version', b.nsajit_error)}; {b.total} measurements; writing {out}",
          flush=True)
    if args.backward_split and b.nt is not None:
        b.nt.context().set_backward_split(args.backward_split)
        b.doc["env"]["backward_split"] = args.backward_split
    try:
        b.ceilings()
        b.save()
        if s.compile_test and matches("compile", s.only):
            if b.nt is None:
                b.doc["compile"] = {"cold": {"error": b.nsajit_error}, "cached": {"error": b.nsajit_error}}
            else:
                b.compile_test()
            b.save()
        b.run_cases(cases)
    finally:
        b.save()
    print()
    print("\n".join(table_lines(b.final)))
    print(f"\nwrote {out}")
    if not args.no_png:
        png = Path(args.png) if args.png else out.with_suffix(".png")
        try:
            how = plot(b.final, png)
            print(f"wrote {png} ({how})")
        except Exception as e:
            print(f"plot failed: {_err(e)}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compile_child is not None:
        return compile_child(args.compile_child)
    if args.plot_from:
        with open(args.plot_from) as f:
            doc = json.load(f)
        finish_doc(doc)  # recomputes bounds, speed-ups and targets from the measurements
        print("\n".join(table_lines(doc)))
        if not args.no_png:
            png = Path(args.png) if args.png else Path(args.plot_from).with_suffix(".png")
            print(f"wrote {png} ({plot(doc, png)})")
        return 0
    s = settings_from(args)
    if args.list:
        print("\n".join(plan_lines(s, plan_cases(s))))
        return 0
    return run_benchmark(s, args)


if __name__ == "__main__":
    sys.exit(main())
