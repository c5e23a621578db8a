#!/usr/bin/env python3
"""Import circles between the modules of a crate: `python3 scripts/module-cycles.py engine/src kernels/src`.

An edge A -> B when A's file names a path into module B (`use crate::..`, `super::..`, `self::..`,
inline `crate::x::y`), resolved to the longest prefix that is a module file. `mod x;` declarations
and `pub use` re-exports of a module's own descendants (a facade) are not edges; inline
`#[cfg(test)] mod` blocks are skipped. Prints every
strongly connected component with more than one module and the edges inside it; exits 1 if any.
"""
import os, re, sys

def modules(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            mods[tuple(rel)] = os.path.join(root, f)
    # #[path = "..."] mod x; inside a file
    for m, path in list(mods.items()):
        for mm in re.finditer(r'#\[path\s*=\s*"([^"]+)"\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)', open(path).read()):
            target = os.path.normpath(os.path.join(os.path.dirname(path), mm.group(1)))
            for k, v in list(mods.items()):
                if os.path.normpath(v) == target:
                    del mods[k]
                    mods[m + (mm.group(2),)] = v
    return mods

def strip(text):
    # inline test modules (`#[cfg(test)] mod tests { use super::*; .. }`, at the end of a file)
    # name their own parent, not this module's
    # (also `#[cfg(all(test, target_os = "linux"))] mod tests {`)
    text = re.split(r"#\[cfg\((?:test|all\([^\]]*\btest\b[^\]]*\))\)\]\s*mod\s+\w+\s*\{", text)[0]
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)

def expand_use(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (paths only, `as` dropped)."""
    tree = re.sub(r"\s+", "", tree)
    def go(prefix, t):
        out, depth, cur = [], 0, ""
        parts = []
        for ch in t:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur); cur = ""
            else:
                cur += ch
        parts.append(cur)
        for p in parts:
            if not p:
                continue
            if "{" in p:
                head, rest = p.split("{", 1)
                out += go(prefix + head, rest[:-1])
            else:
                out.append(prefix + p.split("as")[0] if "as" in p.split("::")[-1] else prefix + p)
        return out
    return go("", tree)

def resolve(mods, here, path):
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] == "super":
        base = here
        while segs and segs[0] == "super":
            base, segs = base[:-1], segs[1:]
    elif segs[0] == "self":
        base, segs = here, segs[1:]
    elif here + (segs[0],) in mods:
        base = here  # a child module named without `self::`
    else:
        return None
    best = base
    for i in range(len(segs)):
        if base + tuple(segs[: i + 1]) in mods:
            best = base + tuple(segs[: i + 1])
        else:
            break
    return best

def graph(src):
    mods = modules(src)
    edges = {}
    for m, path in mods.items():
        text = strip(open(path).read())
        targets = set()
        for u in re.finditer(r"(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
            facade = u.group(1) is not None
            for p in expand_use(u.group(2)):
                t = resolve(mods, m, p)
                if t is None or t == m:
                    continue
                if facade and t[: len(m)] == m:
                    continue  # re-export of a descendant
                targets.add(t)
        body = re.sub(r"(pub(?:\([^)]*\))?\s+)?use\s+[^;]+;", "", text)
        for p in re.finditer(r"(?<![\w:])(\w+(?:::\w+)+)", body):
            t = resolve(mods, m, p.group(1))
            if t is not None and t != m:
                targets.add(t)
        edges[m] = targets
    return mods, edges

def sccs(nodes, edges):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1
        stack.append(v); on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            out.append(comp)
    for v in nodes:
        if v not in index:
            visit(v)
    return out

bad = 0
for src in sys.argv[1:]:
    before = bad
    mods, edges = graph(src)
    name = lambda m: "::".join(m) or "(crate root)"
    for comp in sccs(list(mods), edges):
        if len(comp) < 2:
            continue
        bad += 1
        cs = set(comp)
        print(f"{src}: circle of {len(comp)} modules: {', '.join(sorted(name(c) for c in comp))}")
        for a in sorted(comp):
            for b in sorted(edges[a] & cs):
                print(f"    {name(a)} -> {name(b)}")
    if bad == before:
        print(f"{src}: {len(mods)} modules, no import circles")
sys.exit(1 if bad else 0)
