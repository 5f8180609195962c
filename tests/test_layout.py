"""The package's shape: no import cycle (function-level imports count), no use of another
module's private name, modules of readable size."""

import ast
import pathlib

import memgen

ROOT = pathlib.Path(memgen.__file__).parent
MODULES = {".".join(("memgen",) + p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
           for p in ROOT.rglob("*.py")}


def _imports(name: str, path: pathlib.Path):
    """(imported memgen module, imported names) of every import statement, at any depth."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("memgen"):
                    yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            base = pkg
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            mod = node.module if node.level == 0 else ".".join(filter(None, (base, node.module)))
            if not mod or not mod.startswith("memgen"):
                continue
            names = [a.name for a in node.names]
            subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in MODULES]
            yield from ((s, []) for s in subs)
            if len(subs) < len(names):
                yield mod, [n for n in names if f"{mod}.{n}" not in MODULES]


GRAPH = {m: {t for t, _ in _imports(m, p) if t in MODULES and t != m} for m, p in MODULES.items()}


def test_no_import_cycle():
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in sorted(GRAPH[m] - {"memgen"}):  # the package root re-exports; it imports, it is not imported
            visit(t)
        stack.pop()

    for m in sorted(MODULES):
        visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_negative_control_finds_a_cycle():
    GRAPH["memgen.run.batching"].add("memgen.scan")
    try:
        try:
            test_no_import_cycle()
        except AssertionError as e:
            assert "memgen.scan" in str(e)
        else:
            raise AssertionError("the cycle check missed a planted cycle")
    finally:
        GRAPH["memgen.run.batching"].discard("memgen.scan")


def test_no_private_names_across_modules():
    bad = []
    for m, p in MODULES.items():
        for target, names in _imports(m, p):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if target.rsplit(".", 1)[-1].startswith("_") and not target.endswith("__init__"):
                private.append(target)
            bad += [f"{m} imports {target}:{n}" for n in private]
        tree = ast.parse(p.read_text())
        aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                   for a in n.names}
        # names bound to memgen's own modules (relative or memgen.* imports); os._exit is not ours
        ours = {a.asname or a.name.split(".")[0] for n in ast.walk(tree)
                if (isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("memgen")))
                or (isinstance(n, ast.Import) and any(a.name.startswith("memgen") for a in n.names))
                for a in n.names}
        bad += [f"{m} uses {n.value.id}.{n.attr}" for n in ast.walk(tree)
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
                and n.attr.startswith("_") and not n.attr.startswith("__")
                and n.value.id in ours]
    assert not bad, bad


def test_modules_stay_readable():
    """No module over about 400 lines: a file is one job a reader holds in mind."""
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 420}
    assert not big, big
