#!/usr/bin/env bash
# check_circles.sh - no two files of the library need each other, directly or around a ring.
# From the objects of $BUILD (default build): file A uses file B when A's object refers to a
# symbol B's defines. Every set of files that use each other in a circle fails, with one symbol
# per step of the circle, so a reader knows which call to turn around.
# Usage: tests/check_circles.sh [BUILD_DIR]. Ends with the closing line.
set -u
cd "$(dirname "$0")/.." || exit 1
dir=${1:-${BUILD:-build}}
shopt -s nullglob
objs=("$dir"/obj/src/*/*.o)
if [[ ${#objs[@]} -eq 0 ]]; then
    echo "check_circles: no objects in $dir/obj/src/ (run make)"
    echo "0 passed, 1 failed"
    exit 1
fi
nm -A "${objs[@]}" | python3 -c '
import sys, collections
prefix = sys.argv[1] + "/obj/"
defs, uses = {}, collections.defaultdict(set)
for line in sys.stdin:
    f = line.split()
    path, kind, sym = f[0].rsplit(":", 1)[0], f[-2], f[-1]
    name = path[len(prefix):-2] + ".c"
    if kind == "U":
        uses[name].add(sym)
    elif kind.isupper():
        defs[sym] = name
files = sorted(set(defs.values()) | set(uses))
edge = collections.defaultdict(dict)  # a -> {b: a symbol of b that a uses}
for a in files:
    for s in sorted(uses[a]):
        b = defs.get(s)
        if b and b != a:
            edge[a].setdefault(b, s)
# Tarjan: strongly connected components.
index, low, stack, on, comps, n = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
    for w in edge[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        c = []
        while True:
            w = stack.pop(); on.discard(w); c.append(w)
            if w == v: break
        comps.append(sorted(c))
sys.setrecursionlimit(10000)
for v in files:
    if v not in index: visit(v)
failed = 0
for c in comps:
    if len(c) < 2: continue
    failed += 1
    # One ring through the component: a shortest path from its first file back to it.
    inside, start = set(c), c[0]
    prev, q, last = {start: None}, [start], None
    while q and last is None:
        v = q.pop(0)
        for w in sorted(edge[v]):
            if w == start:
                last = v; break
            if w in inside and w not in prev:
                prev[w] = v; q.append(w)
    path = [start]
    while last is not None:
        path.insert(1, last); last = prev[last]
    path = path[:1] + path[2:] + [start] if len(path) > 1 and path[1] == start else path + [start]
    steps = path[0] + "".join(" -[%s]-> %s" % (edge[x][y], y) for x, y in zip(path, path[1:]))
    print("check_circles: %s need each other: %s" % (", ".join(c), steps))
print("%d passed, %d failed" % (len(files) - sum(len(c) for c in comps if len(c) > 1), failed))
sys.exit(1 if failed else 0)
' "$dir"
