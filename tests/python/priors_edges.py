#!/usr/bin/python3
"""The graph of a prior file as cellshift should read it, recomputed with pandas: one edge per (source, target)
pair, the sign of TF priors merged over the pair's rows (+1: Activation with maybe Unknown, -1: Repression with
maybe Unknown, 0: only Unknown, or both), the largest Jaccard for GO.

Usage: priors_edges.py trrust|dorothea|go FILE [LEVELS]
Prints "rows N nodes M edges E" and then every edge, sorted by (source, target): source TAB target TAB weight."""
import sys

import pandas as pd

kind, path = sys.argv[1], sys.argv[2]
if kind == "trrust":
    t = pd.read_csv(path, sep="\t", header=None, names=["src", "dst", "mode", "pmid"], dtype=str, keep_default_na=False)
    t["bits"] = t["mode"].map({"Activation": 1, "Repression": 2, "Unknown": 4})
elif kind == "dorothea":
    levels = sys.argv[3] if len(sys.argv) > 3 else "ABC"
    t = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    t = t[t["confidence"].isin(list(levels))].rename(columns={"tf": "src", "target": "dst"})
    t["bits"] = t["mor"].astype(float).map({1.0: 1, -1.0: 2})
else:
    t = pd.read_csv(path, sep="\t", dtype={"source": str, "target": str}, keep_default_na=False)
    t = t.rename(columns={"source": "src", "target": "dst"})
rows = len(t)
nodes = len(set(t["src"]) | set(t["dst"]))
if kind == "go":
    e = t.groupby(["src", "dst"])["jaccard"].max().reset_index().rename(columns={"jaccard": "w"})
else:
    t["act"], t["rep"] = (t["bits"] & 1) > 0, (t["bits"] & 2) > 0
    e = t.groupby(["src", "dst"])[["act", "rep"]].max().reset_index()
    e["w"] = e["act"].astype(float) - e["rep"].astype(float)  # +1, -1, or 0 for only Unknown and for both
e = e.sort_values(["src", "dst"])  # code-point order: strcmp order for these ASCII symbols
print("rows %d nodes %d edges %d" % (rows, nodes, len(e)))
for s, d, w in zip(e["src"], e["dst"], e["w"]):
    print("%s\t%s\t%.10g" % (s, d, w))
