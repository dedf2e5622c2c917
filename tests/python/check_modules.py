"""The module graph of src/: each folder is one module, the modules come in the order of CS_MODULES in
CMakeLists.txt (then cli), and a module may include only headers of itself and of earlier modules. A public
header belongs to the module named in HEADERS below; a header missing from the table is an error too, so a new
header is placed in the graph the day it is added. Prints the graph (which module uses which) and exits 1 on any
include against the order."""
import os
import re
import sys

HEADERS = {
    "sys": "core", "rng": "core", "progress": "core", "csr": "core",
    "h5ad": "io", "h5util": "io", "json": "io",
    "priors": "priors",
    "dataset": "data", "design": "data", "split": "data", "rowfetch": "data",
    "linalg": "linalg",
    "nn": "nn", "trainer": "nn", "sampler": "nn",
    "ot": "ot", "ode": "ode", "sim": "sim",
    "model": "models",
    "eval": "eval", "plot": "eval",
    "sweep": "sweep", "scaling": "sweep",
}

top = sys.argv[1]
cmake = open(os.path.join(top, "CMakeLists.txt")).read()
order = re.search(r"set\(CS_MODULES ([^)]*)\)", cmake).group(1).split() + ["cli"]
rank = {m: i for i, m in enumerate(order)}
inc = re.compile(r'^\s*#\s*include\s*[<"]cellshift/([a-z0-9_]+)\.h[>"]', re.M)
bad, uses = [], {}


def check(path, mod):
    for h in inc.findall(open(path).read()):
        owner = HEADERS.get(h)
        rel = os.path.relpath(path, top)
        if owner is None:
            bad.append(f"{rel}: cellshift/{h}.h is not placed in the module graph (tests/python/check_modules.py)")
        elif owner not in rank:
            bad.append(f"{rel}: cellshift/{h}.h belongs to '{owner}', which is not in CS_MODULES")
        elif rank[owner] > rank[mod]:
            bad.append(f"{rel} ({mod}) includes cellshift/{h}.h of the later module '{owner}'")
        elif owner != mod:
            uses.setdefault(mod, set()).add(owner)


for d in sorted(os.listdir(os.path.join(top, "src"))):
    full = os.path.join(top, "src", d)
    if not os.path.isdir(full):
        continue
    if d not in rank:
        bad.append(f"src/{d} is not a module of CS_MODULES in CMakeLists.txt")
        continue
    for f in sorted(os.listdir(full)):
        if f.endswith((".c", ".h")):
            check(os.path.join(full, f), d)
hdir = os.path.join(top, "include", "cellshift")
for f in sorted(os.listdir(hdir)):
    name = f[:-2]
    if name not in HEADERS:
        bad.append(f"include/cellshift/{f} is not placed in the module graph (tests/python/check_modules.py)")
        continue
    check(os.path.join(hdir, f), HEADERS[name])

for m in order:
    if m in uses:
        print(f"{m:7s} uses {', '.join(sorted(uses[m], key=rank.get))}")
for b in bad:
    print("error:", b)
sys.exit(1 if bad else 0)
