#!/usr/bin/python3
"""POT's ot.sinkhorn on the problem of ../shared/bench/pot_sinkhorn_ref.py (same points, cost, float64), but with
the iteration count fixed: the reference's stopThr 1e-12 is met at its first check after 11 iterations on the
4000 x 4000 problem, so it never runs the 200 iterations it is asked for. Here stopThr is -1 (never met), so POT
does exactly ITERS iterations (still its marginal check every 10th).
Usage: pot_sinkhorn_iters.py N M DIM EPS ITERS -> prints 'seconds S cost C iterations I error E'"""
import sys, time, numpy as np, ot
n, m, d = (int(v) for v in sys.argv[1:4]); eps = float(sys.argv[4]); iters = int(sys.argv[5])
rng = np.random.default_rng(0)
x = rng.standard_normal((n, d)); y = rng.standard_normal((m, d)) + 0.5
a = np.full(n, 1.0 / n); b = np.full(m, 1.0 / m)
t = time.perf_counter()
M = ot.dist(x, y); M /= M.max()
P, log = ot.sinkhorn(a, b, M, eps, numItermax=iters, stopThr=-1.0, log=True, warn=False)
t = time.perf_counter() - t
print("seconds %.3f cost %.6f iterations %d error %.3g" % (t, float((P * M).sum()), log["niter"] + 1, log["err"][-1]))
