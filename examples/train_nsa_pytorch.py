#!/usr/bin/env python3
"""nsajit.torch.nsa_attention inside a PyTorch module: a few training steps of a tiny NSA
language model on random tokens (needs a CUDA GPU and libnsajit.so; see python/README.md).

    python3 examples/train_nsa_pytorch.py
"""
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))  # or: pip install -e python
import nsajit.torch as nt  # noqa: E402

NSA = dict(l=32, d=16, l_sel=64, n=16, w=512)  # the paper's block sizes (1 initial + 2 local blocks in n)


class NSALayer(nn.Module):
    def __init__(self, d_model=512, hq=16, h=1, dk=64, dv=64):
        super().__init__()
        self.hq, self.h, self.dk, self.dv = hq, h, dk, dv
        self.qkv = nn.Linear(d_model, hq * dk + h * dk + h * dv, bias=False)
        self.gates = nn.Linear(d_model, 3 * hq)  # g_cmp, g_slc, g_swa = sigmoid(...)
        self.out = nn.Linear(hq * dv, d_model, bias=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x):
        B, T, _ = x.shape
        h = self.norm(x)
        # Slices of one packed projection are fine: nsajit reads strided views without copying.
        q, k, v = self.qkv(h).split([self.hq * self.dk, self.h * self.dk, self.h * self.dv], dim=-1)
        q, k, v = q.view(B, T, self.hq, self.dk), k.view(B, T, self.h, self.dk), v.view(B, T, self.h, self.dv)
        g = torch.sigmoid(self.gates(h).float()).view(B, T, 3, self.hq).unbind(2)
        # bf16 q/k/v (autocast); compression, selection and the three branches, forward and backward,
        # run on nsajit kernels.
        o = nt.nsa_attention(q, k, v, *g, check_gate_range=False, **NSA)
        return x + self.out(o.reshape(B, T, self.hq * self.dv))


class TinyNSALM(nn.Module):
    def __init__(self, vocab=1000, d_model=512, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList(NSALayer(d_model) for _ in range(layers))
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def main():
    torch.manual_seed(0)
    model = TinyNSALM().cuda()
    # Compile every kernel of this head configuration up front, in parallel (from the disk
    # cache after the first run), so the first step does not stop to compile.
    n = nt.prepare(dk=64, dv=64, heads=1, group=16, progress=True, **NSA)
    print(f"{n} kernels ready")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, 1000, (2, 4097), device="cuda")  # T = 4096 inputs + 1 shifted target
    for step in range(10):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        print(f"step {step}: loss {loss.item():.4f}")  # memorising one batch: the loss falls


if __name__ == "__main__":
    main()
