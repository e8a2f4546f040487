#!/usr/bin/env python3
"""File-level import circles in Rust crates: each .rs file under src/ is a node; an edge A->B when
A names module B by `crate::b`, `super::b` (resolved), `self::b`, or a bare `b::` of a sibling
module declared with `mod b`. `#[cfg(test)] mod tests { ... }` blocks are cut off when the file
ends with them (test code may reach anywhere). Prints the strongly connected components > 1 and exits 1 when there is one (ARCHITECTURE.md:
no import circle between files of a crate). Usage: modcycles.py CRATE_DIR..."""
import os, re, sys

def modules(src):
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if not n.endswith('.rs'): continue
            path = os.path.join(root, n)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] in ('lib', 'main', 'mod'): rel = rel[:-1]
            files[tuple(rel)] = path
    return files

def strip_tests(text):
    m = re.search(r'#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{', text)
    if m: text = text[:m.start()]
    text = re.sub(r'//[^\n]*', '', text)          # comments (also doc links)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)  # strings
    return text

def edges(files):
    out = {k: set() for k in files}
    for mod, path in files.items():
        text = strip_tests(open(path).read())
        parent = mod[:-1] if not path.endswith(('mod.rs','lib.rs','main.rs')) else mod
        here = mod if path.endswith(('mod.rs','lib.rs','main.rs')) else mod
        def resolve(base, rest):
            parts = [p for p in rest.split('::') if p]
            best = None
            for i in range(1, len(parts)+1):
                cand = tuple(base) + tuple(parts[:i])
                if cand in files: best = cand
            return best
        # crate::a::b  and  use crate::{a, b::c}
        for m in re.finditer(r'\bcrate::((?:\w+::)*\w+)', text):
            t = resolve((), m.group(1))
            if t: out[mod].add(t)
        for m in re.finditer(r'\bcrate::\{([^}]*)\}', text):
            for item in m.group(1).split(','):
                t = resolve((), item.strip())
                if t: out[mod].add(t)
        # super::x  (super is the parent module of this file's module)
        for m in re.finditer(r'\bsuper::((?:\w+::)*\w+)', text):
            t = resolve(mod[:-1], m.group(1))
            if t: out[mod].add(t)
        # sibling/child by bare path `name::` or `use name::` where name is a module of the parent
        for m in re.finditer(r'(?<![:\w])(\w+)::', text):
            name = m.group(1)
            for base in (mod, parent):
                cand = tuple(base) + (name,)
                if cand in files and cand != mod:
                    out[mod].add(cand); break
        out[mod].discard(mod)
        # a parent declaring `mod child` is not an import; drop edges parent->child only from `mod x;`
    return out

def sccs(g):
    index, low, stack, on, res, i = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in g[v]:
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            res.append(comp)
    for v in g:
        if v not in index: visit(v)
    return [c for c in res if len(c) > 1]

def name(m): return '::'.join(m) or '<root>'

found = False
for crate in sys.argv[1:]:
    src = os.path.join(crate, 'src')
    files = modules(src)
    g = edges(files)
    # the crate root reaching its own modules is declaration/re-export, not an import circle
    for k in g:
        if len(k) == 0: g[k] = set()
    cyc = sccs(g)
    print(f"{crate}: {len(files)} files, {'no circle' if not cyc else ''}")
    found = found or bool(cyc)
    for c in cyc:
        print('   circle:', ' <-> '.join(sorted(name(m) for m in c)))
        for a in c:
            print('      ', name(a), '->', ', '.join(sorted(name(b) for b in g[a] if b in c)))

sys.exit(1 if found else 0)
