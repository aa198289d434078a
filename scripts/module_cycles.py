#!/usr/bin/env python3
"""Import cycles between a crate's top-level modules.

Reads every `crate::<module>` path outside comments and `#[cfg(test)]`
code, prints each top-level module's dependencies, then the strongly
connected groups of more than one module (the cycles), or `none`: an
equivalent of `cargo modules dependencies --acyclic` that needs no extra
tool. A `super::` path never leaves its top-level module, so it is not read.

    python3 scripts/module_cycles.py frontend/src
"""
import re
import sys
from pathlib import Path

CRATE_PATH = re.compile(r"crate::([a-z_0-9]+)")


def dependencies(src: Path) -> dict[str, set[str]]:
    """Top-level module -> the other top-level modules it names."""
    deps: dict[str, set[str]] = {}
    for file in sorted(src.rglob("*.rs")):
        module = file.relative_to(src).parts[0].removesuffix(".rs")
        if module in ("lib", "main"):
            continue
        code = file.read_text().split("#[cfg(test)]")[0]
        named = deps.setdefault(module, set())
        for line in code.splitlines():
            if not line.strip().startswith("//"):
                named.update(CRATE_PATH.findall(line))
    return {m: {d for d in named if d in deps and d != m} for m, named in deps.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for dep in graph[module]:
            if dep not in index:
                visit(dep)
                low[module] = min(low[module], low[dep])
            elif dep in on_stack:
                low[module] = min(low[module], index[dep])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph):
        if module not in index:
            visit(module)
    return groups


if __name__ == "__main__":
    graph = dependencies(Path(sys.argv[1]))
    for module in sorted(graph):
        print(f"{module:14} -> {', '.join(sorted(graph[module]))}")
    found = cycles(graph)
    print("cycles:", found if found else "none")
