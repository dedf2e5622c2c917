"""The table of bench/scale.sh from its rows (cells, mode, rank, VmHWM kB, cells/s, training seconds, parameters),
and the projection of the largest streamed epoch to 10^8 cells on 64 nodes x 64 cores."""
import csv, sys
from collections import defaultdict

rows, np_ = sys.argv[1], int(sys.argv[2])
R = defaultdict(list)
for r in csv.DictReader(open(rows)):
    R[(int(r["cells"]), r["mode"])].append(r)
sizes = sorted({n for n, _ in R})
base = max(int(r["vmhwm_kb"]) for r in R[(sizes[0], "stream")])
print(f"{'cells':>10} {'mode':>10} {'VmHWM per rank (MiB)':>22} {'growth':>7} {'cells/s':>10} {'epoch s':>8} {'wait s':>7} {'stream/memory':>14}")
for n in sizes:
    for mode in ("stream", "noprefetch", "memory"):
        rs = R.get((n, mode))
        if not rs:
            continue
        hwm = [int(r["vmhwm_kb"]) / 1024 for r in rs]
        rate, secs = float(rs[0]["cells_per_s"]), float(rs[0]["train_s"])
        ratio = ""
        if mode != "memory" and R.get((n, "memory")):
            ratio = f"{rate / float(R[(n, 'memory')][0]['cells_per_s']):.3f}"
        growth = f"{max(hwm) * 1024 / base:.2f}x" if mode == "stream" else ""
        wait = rs[0].get("wait_s") or ""
        wait = f"{float(wait):.2f}" if wait else ""
        print(f"{n:>10} {mode:>10} {' / '.join(f'{h:.0f}' for h in hwm):>22} {growth:>7} {rate:>10.4g} {secs:>8.1f} {wait:>7} {ratio:>14}")
# Projection: per-rank compute rate from the largest streamed run; weak scaling with the per-rank batch fixed.
n = max(s for s in sizes if R.get((s, "stream")))
rs = R[(n, "stream")]
rate, params = float(rs[0]["cells_per_s"]), int(rs[0]["params"])
B, N, P, bw, alpha = 512, 1e8, 64 * 64, 12.5e9, 5e-6
per_rank = rate / np_
b = B / np_                         # cells per rank per step, as measured
steps = N / (b * P)                 # global batch b * P
compute = N / (per_rank * P)
bytes_ = 4 * params                 # float32 gradient
allreduce = 2 * (P - 1) / P * bytes_ / bw + 2 * (P - 1) * alpha
print(f"\nprojection for 1e8 cells on 64 nodes x 64 cores ({P} ranks), from the {n}-cell streamed epoch:")
print(f"  model: epoch = N / (r P) + steps x (2 (P-1)/P x 4 params / BW + 2 (P-1) alpha), ring allreduce of the float32 gradient")
print(f"  r = {per_rank:.4g} cells/s per rank (measured at {np_} ranks, includes its reads and allreduce), {params} parameters "
      f"({bytes_ / 1e6:.2f} MB), per-rank batch {b:.0f} (global {b * P:.0f}), {steps:.0f} steps, BW = {bw / 1e9:.1f} GB/s "
      f"(100 Gb/s InfiniBand), alpha = {alpha * 1e6:.0f} us")
print(f"  compute {compute:.1f} s + allreduce {steps:.0f} x {allreduce * 1e3:.2f} ms = {steps * allreduce:.1f} s: "
      f"epoch {compute + steps * allreduce:.1f} s")
# Compute scales by ranks only if every rank holds its share of every window: the stream sampler's window takes one
# block of each of W strata, so with contiguous shards a rank holds W / P blocks of each when P divides W.
blk = 512
print(f"  balance: needs -stream_window a multiple of P; e.g. -stream_block {blk} ({N / blk / P:.0f} blocks per rank) and "
      f"-stream_window {8 * P} (8 blocks, {8 * blk} rows, per rank per window)")
