#!/usr/bin/python3
"""Compare cellshift's [B,T,C] kernels with PyTorch.

Usage: check_attention_torch.py DIR [TOL]

DIR holds what `test_nn_kernels -dump DIR` wrote: inputs, outputs and gradients (for a fixed output gradient) of
multi-head self-attention with a key padding mask, GELU, SiLU, softmax and LayerNorm on [B,T,C], and the
sinusoidal time embedding with its time derivative, as raw float32. PyTorch recomputes each from the same float32
inputs in float64 (attention through torch.nn.functional.multi_head_attention_forward, with in_proj_weight =
wqkv^T and out_proj.weight = wo^T, since cellshift stores linear weights [in, out]) and autograd gives the
gradients. Every array must agree to TOL (default 1e-5) in max |a - b| / max |b|. Exit 77 (skipped) without torch."""
import os
import sys

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIPPED: PyTorch is not installed (Debian: apt-get install -y python3-torch)")
    sys.exit(77)

d = sys.argv[1]
tol = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-5
torch.set_default_dtype(torch.float64)


def load(name, shape=None, dtype=np.float32):
    a = np.fromfile(os.path.join(d, name + (".i32" if dtype == np.int32 else ".f32")), dtype=dtype)
    return a.reshape(shape) if shape is not None else a


def T(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


B, Tn, C, H, NT, D, _ = load("dims", dtype=np.int32)
lens = load("attn_len", dtype=np.int32)
failures = 0


def compare(what, got, ref):
    global failures
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    err = np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30)
    ok = err <= tol
    failures += not ok
    print(f"{what:34s} max|cellshift - torch| / max|torch| = {err:.2e}  {'ok' if ok else 'FAIL'}")


# ----------------------------------------------------------------------------------------- attention
x = T(load("attn_x", (B, Tn, C)), True)
wqkv = T(load("attn_wqkv", (C, 3 * C)), True)
bqkv = T(load("attn_bqkv", (3 * C,)), True)
wo = T(load("attn_wo", (C, C)), True)
bo = T(load("attn_bo", (C,)), True)
dout = T(load("attn_dout", (B, Tn, C)))
mask = torch.arange(Tn)[None, :] >= torch.tensor(lens, dtype=torch.int64)[:, None]  # True = padded key
q = x.transpose(0, 1)  # (T, B, C)
out, _ = F.multi_head_attention_forward(q, q, q, C, H, wqkv.t(), bqkv, None, None, False, 0.0, wo.t(), bo, training=False,
                                        key_padding_mask=mask, need_weights=False)
out = out.transpose(0, 1)
(out * dout).sum().backward()
compare("attention out", load("attn_out"), out)
compare("attention dx", load("attn_dx"), x.grad)
compare("attention dWqkv", load("attn_dwqkv"), wqkv.grad)
compare("attention dbqkv", load("attn_dbqkv"), bqkv.grad)
compare("attention dWo", load("attn_dwo"), wo.grad)
compare("attention dbo", load("attn_dbo"), bo.grad)

# ----------------------------------------------------------------------------------------- elementwise, row-wise
ax = load("act_x", (B, Tn, C))
ad = T(load("act_dout", (B, Tn, C)))
for name, fn in (("gelu", lambda v: F.gelu(v)), ("silu", F.silu), ("softmax", lambda v: F.softmax(v, dim=-1))):
    v = T(ax, True)
    y = fn(v)
    (y * ad).sum().backward()
    compare(f"{name} [B,T,C]", load(f"{name}_y"), y)
    compare(f"{name} [B,T,C] dx", load(f"{name}_dx"), v.grad)
v = T(ax, True)
gamma = T(load("ln_gamma", (C,)), True)
beta = T(load("ln_beta", (C,)), True)
y = F.layer_norm(v, (C,), gamma, beta, 1e-5)
(y * ad).sum().backward()
compare("layernorm [B,T,C]", load("ln_y"), y)
compare("layernorm [B,T,C] dx", load("ln_dx"), v.grad)
compare("layernorm [B,T,C] dgamma", load("ln_dgamma"), gamma.grad)
compare("layernorm [B,T,C] dbeta", load("ln_dbeta"), beta.grad)

# ----------------------------------------------------------------------------------------- time embedding
t = T(load("te_t", (NT,)), True)
half = D // 2
freqs = torch.exp(-np.log(10000.0) * torch.arange(half) / half)
args = t[:, None] * freqs[None, :]
emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
(emb * T(load("te_dout", (NT, D)))).sum().backward()
compare("time embedding", load("te_out"), emb)
compare("time embedding dt", load("te_dt"), t.grad)

print(f"torch {torch.__version__}: {failures} comparison(s) above {tol:g}")
sys.exit(1 if failures else 0)
