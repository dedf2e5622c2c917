#!/usr/bin/python3
"""PyTorch reference for bench_kernels' attention: torch.nn.MultiheadAttention (batch_first, no dropout) forward
and backward (input and all parameter gradients) on float32 x[B,T,C], best of REPS repetitions.

Usage: torch_attention_ref.py B T C H THREADS [REPS]   -> one line "torch_attention threads .. fwd_ms .. fwdbwd_ms .."
"""
import sys
import time

import torch

B, T, C, H, threads = (int(a) for a in sys.argv[1:6])
reps = int(sys.argv[6]) if len(sys.argv) > 6 else 5
torch.set_num_threads(threads)
torch.manual_seed(0)
mha = torch.nn.MultiheadAttention(C, H, batch_first=True)
x = torch.rand(B, T, C, requires_grad=True)
dout = torch.rand(B, T, C)


def fwd():
    with torch.no_grad():
        mha(x, x, x, need_weights=False)


def step():
    out, _ = mha(x, x, x, need_weights=False)
    out.backward(dout)


def best(fn):
    fn()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t > 0.2:
            break
        n *= 2
    b = 1e300
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        b = min(b, (time.perf_counter() - t) / n)
    return b


tf, ts = best(fwd), best(step)
flops_fwd = 8.0 * B * T * C * C + 4.0 * B * T * T * C
print(f"torch_attention threads {threads} B {B} T {T} C {C} H {H} fwd_ms {tf * 1e3:.3f} fwdbwd_ms {ts * 1e3:.3f} "
      f"fwd_gflops {flops_fwd / tf / 1e9:.1f} fwdbwd_gflops {3 * flops_fwd / ts / 1e9:.1f} torch {torch.__version__}")
