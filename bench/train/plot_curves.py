#!/usr/bin/env python3
"""Plots the loss curves of bench/train/train_nsa.py's JSON (nsajit and reference backends)
and says whether they agree.

Agreement, with several seeds per backend (train_nsa.py --seeds, the default 0,1,2): the final
loss of each run (smoothed by a centred moving average of --window steps, default 21, and
averaged over the last --last steps, default 50) is taken per seed; the backends agree when the
difference of their mean final losses is within 2 standard errors of that difference (the
seed-to-seed variation), or below --abs-tol (0.05) / --rel-tol (5%). Once a model starts to
learn, training is chaotic: bf16 kernels against a float32 reference (or the reference against
itself, through PyTorch's GPU atomics) part after some dozens of steps, so one pair of runs
cannot show that they train alike; the spread over seeds can. With one seed, the two smoothed
curves are compared over the last --last steps (mean |difference| below --abs-tol or --rel-tol).

Also prints the speed ratio: the reference's median step time / nsajit's (the first
timing_skips_first steps of each run are left out, as train_nsa.py does).

    /usr/bin/python3 bench/train/plot_curves.py /tmp/train_nsa.json --png /tmp/train_nsa.png

Exit status 0, or 1 with --strict when the curves do not agree. Needs matplotlib for the
PNG (Debian: apt-get install -y python3-matplotlib); without it, --no-plot prints the verdict.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def smooth(xs, window):
    """Centred moving average (shorter at the ends)."""
    half = window // 2
    prefix = [0.0]
    for x in xs:
        prefix.append(prefix[-1] + x)
    out = []
    for i in range(len(xs)):
        lo, hi = max(0, i - half), min(len(xs), i + half + 1)
        out.append((prefix[hi] - prefix[lo]) / (hi - lo))
    return out


def compare(runs, window, last, abs_tol, rel_tol):
    a, b = runs["nsajit"]["loss"], runs["reference"]["loss"]
    steps = min(len(a), len(b))
    if steps == 0:
        return {"agree": False, "why": "no steps"}
    sa, sb = smooth(a[:steps], window), smooth(b[:steps], window)
    lo = max(0, steps - last)
    diffs = [abs(x - y) for x, y in zip(sa[lo:], sb[lo:])]
    mad = statistics.fmean(diffs)
    ref_mean = statistics.fmean(sb[lo:])
    rel = mad / abs(ref_mean) if ref_mean else float("inf")
    return {
        "agree": mad < abs_tol or rel < rel_tol,
        "steps_compared": f"{lo}..{steps - 1}",
        "mean_abs_diff": mad,
        "max_abs_diff": max(diffs),
        "relative": rel,
        "nsajit_final": statistics.fmean(sa[lo:]),
        "reference_final": ref_mean,
    }


def compare_seeds(seed_runs, window, last, abs_tol, rel_tol):
    """Several seeds per backend: the backends agree when the difference of their mean
    final losses (smoothed, last `last` steps) is within 2 standard errors of that
    difference (seed-to-seed variation), or within abs_tol / rel_tol."""
    finals = {}
    for name in ("nsajit", "reference"):
        finals[name] = []
        for run in seed_runs[name].values():
            s = smooth(run["loss"], window)
            finals[name].append(statistics.fmean(s[max(0, len(s) - last):]))
    n, r = finals["nsajit"], finals["reference"]
    if len(n) < 2 or len(r) < 2:
        return None
    diff = abs(statistics.fmean(n) - statistics.fmean(r))
    stderr = (statistics.variance(n) / len(n) + statistics.variance(r) / len(r)) ** 0.5
    ref_mean = statistics.fmean(r)
    return {
        "agree": diff <= max(2 * stderr, abs_tol, rel_tol * abs(ref_mean)),
        "seeds": len(n),
        "nsajit_finals": n,
        "reference_finals": r,
        "diff_of_means": diff,
        "two_stderr": 2 * stderr,
        "nsajit_mean_final": statistics.fmean(n),
        "reference_mean_final": ref_mean,
    }


def step_time(run):
    times = run["step_time_s"][run.get("timing_skips_first", 0):] or run["step_time_s"]
    return statistics.median(times) if times else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", help="the --out file of train_nsa.py")
    p.add_argument("--png", default=None, help="output image (default: the JSON path with .png)")
    p.add_argument("--window", type=int, default=21)
    p.add_argument("--last", type=int, default=50)
    p.add_argument("--abs-tol", type=float, default=0.05)
    p.add_argument("--rel-tol", type=float, default=0.05)
    p.add_argument("--strict", action="store_true", help="exit 1 when the curves do not agree")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)

    with open(args.json) as f:
        doc = json.load(f)
    runs, info = doc["runs"], doc.get("info", {})
    for name, run in runs.items():
        t = step_time(run)
        print(f"{name:9s}: {run['steps']} steps, median {1e3 * t:.1f} ms/step, final loss (last 20 mean) "
              f"{statistics.fmean(run['loss'][-20:]):.4f}, acc {statistics.fmean(run['acc'][-20:]):.3f}"
              + (", STOPPED EARLY" if run.get("stopped_early") else ""))
    # Does the selection find the needle? The best layer's hit rate over the last logged steps.
    for name, by_seed in (doc.get("seeds") or {n: {"0": r} for n, r in runs.items()}).items():
        rates = []
        for run in by_seed.values():
            hits = run.get("selection_hit", [])[-4:]
            if hits:
                rates.append(statistics.fmean(max(h["per_layer"]) for h in hits))
        if rates:
            print(f"{name:9s}: needle block among the selected blocks (best layer, last logged steps): "
                  f"{', '.join(f'{r:.2f}' for r in rates)}; by chance {info.get('chance_selection_hit', float('nan')):.2f}")
    verdict = None
    if "nsajit" in runs and "reference" in runs:
        verdict = compare(runs, args.window, args.last, args.abs_tol, args.rel_tol)
        several = all(len(doc.get("seeds", {}).get(b, {})) >= 2 for b in ("nsajit", "reference"))
        print(f"{'first seed alone: ' if several else ''}loss curves (moving average of {args.window}, steps "
              f"{verdict.get('steps_compared')}): mean |diff| "
              f"{verdict.get('mean_abs_diff', float('nan')):.4f} (max {verdict.get('max_abs_diff', float('nan')):.4f}), "
              f"relative {100 * verdict.get('relative', float('nan')):.2f}% -> "
              f"{'AGREE' if verdict['agree'] else 'DISAGREE'} (tolerance {args.abs_tol} or {100 * args.rel_tol:.0f}%)")
        seeds = doc.get("seeds", {})
        if all(len(seeds.get(b, {})) >= 2 for b in ("nsajit", "reference")):
            verdict = compare_seeds(seeds, args.window, args.last, args.abs_tol, args.rel_tol)
            print(f"over {verdict['seeds']} seeds: final loss nsajit {verdict['nsajit_mean_final']:.3f} "
                  f"({', '.join(f'{x:.3f}' for x in verdict['nsajit_finals'])}), reference "
                  f"{verdict['reference_mean_final']:.3f} ({', '.join(f'{x:.3f}' for x in verdict['reference_finals'])}); "
                  f"difference {verdict['diff_of_means']:.3f} against 2 standard errors {verdict['two_stderr']:.3f} "
                  f"-> {'AGREE' if verdict['agree'] else 'DISAGREE'} (the verdict: a single pair of runs parts "
                  f"once training turns chaotic)")
            verdict["mean_abs_diff"] = verdict["diff_of_means"]
        tn, tr = step_time(runs["nsajit"]), step_time(runs["reference"])
        if tn and tr:
            print(f"speed: reference / nsajit median step time = {tr / tn:.2f}x "
                  f"({1e3 * tr:.1f} ms vs {1e3 * tn:.1f} ms, {info.get('device', '?')})")

    if not args.no_plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed (apt-get install -y python3-matplotlib, or --no-plot)",
                  file=sys.stderr)
            return 2
        png = args.png or (args.json[:-5] if args.json.endswith(".json") else args.json) + ".png"
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2, 1]})
        colors = {"nsajit": "tab:blue", "reference": "tab:orange"}
        for name, by_seed in doc.get("seeds", {}).items():
            for seed, run in list(by_seed.items())[1:]:  # the other seeds, thin
                ax1.plot(smooth(run["loss"], args.window), color=colors.get(name), alpha=0.45, linewidth=0.9,
                         linestyle="--", label=f"{name} seed {seed}")
        for name, run in runs.items():
            c = colors.get(name)
            ax1.plot(run["loss"], color=c, alpha=0.25, linewidth=0.8)
            ax1.plot(smooth(run["loss"], args.window), color=c, linewidth=1.8,
                     label=f"{name} (moving avg {args.window})")
            ax2.plot([1e3 * t for t in run["step_time_s"]], color=c, linewidth=1.0,
                     label=f"{name}: median {1e3 * step_time(run):.1f} ms")
        if "chance_loss" in info:
            ax1.axhline(info["chance_loss"], color="gray", linestyle=":", linewidth=1, label="chance ln(values)")
        if "bag_of_values_loss" in info:
            ax1.axhline(info["bag_of_values_loss"], color="gray", linestyle="--", linewidth=1,
                        label="ln(pairs): values seen, not retrieved")
        ax1.set_xlabel("step")
        ax1.set_ylabel("cross-entropy of the answer")
        title = info.get("task", "")
        if verdict is not None:
            title += f"\nlast {args.last} steps: mean |diff| {verdict.get('mean_abs_diff', float('nan')):.3f} -> " \
                     f"{'agree' if verdict['agree'] else 'DISAGREE'}"
        ax1.set_title(title, fontsize=9)
        ax1.legend(fontsize=8)
        ax1.grid(alpha=0.3)
        ax2.set_xlabel("step")
        ax2.set_ylabel("wall time per step (ms)")
        ax2.set_yscale("log")
        ax2.set_title(f"{info.get('device', '')}, torch {info.get('torch', '')}", fontsize=9)
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3, which="both")
        fig.tight_layout()
        fig.savefig(png, dpi=120)
        print(f"wrote {png}")
    if args.strict and verdict is not None and not verdict["agree"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
