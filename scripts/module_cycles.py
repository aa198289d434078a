#!/usr/bin/env python3
"""Import cycles between a crate's top-level modules.

Reads every `crate::<module>` path outside comments and `#[cfg(test)]`
code, prints each top-level module's dependencies and then the strongly
connected groups of more than one module (the cycles), or `none`. An
equivalent of `cargo modules dependencies --acyclic` that needs no extra
tool.

    python3 scripts/module_cycles.py frontend/src
"""
import re, sys, os, glob
root = sys.argv[1]
mods = {}
for p in glob.glob(f'{root}/**/*.rs', recursive=True):
    rel = os.path.relpath(p, root)
    top = rel.split('/')[0].removesuffix('.rs')
    if top in ('lib', 'main'): continue
    text = open(p).read()
    text = text.split('#[cfg(test)]')[0]
    deps = set()
    for line in text.split('\n'):
        s = line.strip()
        if s.startswith('//'): continue
        for m in re.findall(r'crate::([a-z_0-9]+)', s):
            deps.add(m)
        # `super::` from a top-level dir module's children stays inside
    mods.setdefault(top, set()).update(d for d in deps if d != top)
names = sorted(mods)
# keep only deps that are modules
for k in mods: mods[k] = {d for d in mods[k] if d in mods}
index = {}; low = {}; stack = []; on = set(); sccs = []; c = [0]
def strong(v):
    index[v] = low[v] = c[0]; c[0] += 1; stack.append(v); on.add(v)
    for w in mods[v]:
        if w not in index: strong(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
sys.setrecursionlimit(10000)
for v in names:
    if v not in index: strong(v)
cycles = [sorted(s) for s in sccs if len(s) > 1]
for v in names: print(f'{v:14} -> {", ".join(sorted(mods[v]))}')
print('cycles:', cycles if cycles else 'none')
