"""Runs one NSA layer (forward + backward, own selection) between cudaProfilerStart/Stop, after a
warm-up, so that Nsight Compute sees exactly one launch of each kernel:

    ncu --profile-from-start off --set full -o nsa python3 bench/profile_nsa.py --shape paper

--shape paper: HQ 64, H 4, Dk 192, Dv 128, l = 32, d = 16 (the paper's); main: Dk = Dv = 128,
l = d = 64. --part topn profiles the compressed forward and the top-n alone.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_nsa as bn  # noqa: E402
import nsajit.torch as nt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=["paper", "main"], default="paper")
    p.add_argument("--T", type=int, default=65536)
    p.add_argument("--part", choices=["nsa", "topn"], default="nsa")
    a = p.parse_args()
    dk, (l, d) = (192, bn.CMP_PAPER) if a.shape == "paper" else (128, bn.CMP_MAIN)
    H, G, dv = 4, 16, 128
    gen = torch.Generator(device="cuda")
    gen.manual_seed(0)
    q = torch.randn(1, a.T, H * G, dk, device="cuda", dtype=torch.bfloat16, generator=gen, requires_grad=True)
    k = torch.randn(1, a.T, H, dk, device="cuda", dtype=torch.bfloat16, generator=gen, requires_grad=True)
    v = torch.randn(1, a.T, H, dv, device="cuda", dtype=torch.bfloat16, generator=gen, requires_grad=True)
    gates = [(torch.rand(1, a.T, H * G, device="cuda", generator=gen) * 0.98 + 0.01).requires_grad_()
             for _ in range(3)]

    def layer():
        if a.part == "topn":
            with torch.no_grad():
                kc, vc = nt.compress(k, l=l, d=d), nt.compress(v, l=l, d=d)
                _, lse = nt.compressed_attention(q, kc, vc, l=l, d=d, return_lse=True)
                nt.select_topn(q, kc, lse, l=l, d=d, l_sel=bn.L_SEL, n=bn.N_SEL)
            return
        o = nt.nsa_attention(q, k, v, *gates, l=l, d=d, l_sel=bn.L_SEL, n=bn.N_SEL, w=bn.WINDOW,
                             check_gate_range=False)
        o.backward(torch.ones_like(o))

    layer()  # compiles and loads every kernel, allocates the workspaces
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    layer()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print("profiled one", a.part, "pass,", a.shape, "T =", a.T)


if __name__ == "__main__":
    main()
