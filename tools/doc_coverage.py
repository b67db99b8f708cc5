"""Docstring and annotation coverage of the package, for `make lint` and the issue's figures.

    python tools/doc_coverage.py            # a table per module, then the totals
    python tools/doc_coverage.py --check    # exit 1 below the floors (public docstrings 100 %, annotations 90 %)

A function is *fully annotated* when every parameter but ``self``/``cls`` and
its return carry an annotation (``__init__`` needs no return annotation).
*Public* means a name without a leading underscore, in a module or class that
is public too; dunder methods are left out of the docstring count.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lstm_inspect"
DOCSTRING_FLOOR = 1.0  # public functions and classes
ANNOTATION_FLOOR = 0.9  # all functions


@dataclass
class Counts:
    functions: int = 0
    documented: int = 0
    annotated: int = 0
    public: int = 0
    public_documented: int = 0

    def add(self, other: Counts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def fully_annotated(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Every parameter (but self/cls) and the return annotated."""
    args = node.args
    params = args.posonlyargs + args.args + args.kwonlyargs
    if params and params[0].arg in ("self", "cls"):
        params = params[1:]
    params = params + [a for a in (args.vararg, args.kwarg) if a is not None]
    if any(p.annotation is None for p in params):
        return False
    return node.returns is not None or node.name == "__init__"


def _inherits_docstring(path: Path, class_path: str, name: str) -> bool:
    """Whether method ``name`` of class ``class_path`` (``A.B.``) in the module at ``path`` inherits a
    docstring from a base class, as ``help()`` and ``inspect.getdoc`` show it."""
    import importlib
    import inspect

    module_name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    try:
        obj: object = importlib.import_module(module_name)
        for part in class_path.rstrip(".").split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return False
    if not isinstance(obj, type):
        return False
    for base in obj.__mro__[1:]:
        member = base.__dict__.get(name)
        if member is not None:
            function = getattr(member, "fget", None) or getattr(member, "__func__", None) or member
            return bool(inspect.getdoc(function))
    return False


def count(path: Path, missing: list[str]) -> Counts:
    """The counts of one module; public objects without a docstring are appended to ``missing``.

    A method that overrides a documented method of a base class counts as
    documented: ``help()`` shows it the base's docstring.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    counts = Counts()
    module_public = not path.name.startswith("_") or path.name == "__init__.py"

    def visit(body: list[ast.stmt], public: bool, prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                counts.functions += 1
                has_doc = ast.get_docstring(node) is not None or (
                    bool(prefix) and _inherits_docstring(path, prefix, node.name))
                counts.documented += has_doc
                counts.annotated += fully_annotated(node)
                dunder = node.name.startswith("__") and node.name.endswith("__")
                if public and not node.name.startswith("_") and not dunder and not _is_overload(node):
                    counts.public += 1
                    counts.public_documented += has_doc
                    if not has_doc:
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {prefix}{node.name}")
            elif isinstance(node, ast.ClassDef):
                is_public = public and not node.name.startswith("_")
                if is_public:
                    counts.public += 1
                    has_doc = ast.get_docstring(node) is not None
                    counts.public_documented += has_doc
                    if not has_doc:
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno} class {prefix}{node.name}")
                visit(node.body, is_public, f"{prefix}{node.name}.")

    visit(tree.body, module_public, "")
    return counts


def _is_overload(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "overload" for d in node.decorator_list)


def main(argv: list[str]) -> int:
    """Print the table (unless ``--quiet``) and the totals; with ``--check``, 1 below the floors."""
    sys.path.insert(0, str(ROOT))
    missing: list[str] = []
    total = Counts()
    rows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        counts = count(path, missing)
        total.add(counts)
        rows.append((str(path.relative_to(PACKAGE)), counts))
    if "--quiet" not in argv:
        print(f"{'module':32} {'functions':>9} {'docstring':>9} {'annotated':>9} {'public doc':>10}")
        for name, c in rows:
            print(f"{name:32} {c.functions:9d} {_pct(c.documented, c.functions):>9} {_pct(c.annotated, c.functions):>9} "
                  f"{_pct(c.public_documented, c.public):>10}")
    print(f"{'total':32} {total.functions:9d} {_pct(total.documented, total.functions):>9} "
          f"{_pct(total.annotated, total.functions):>9} {_pct(total.public_documented, total.public):>10}")
    if "--check" in argv:
        ok = True
        if total.public_documented < DOCSTRING_FLOOR * total.public:
            print(f"public functions and classes without a docstring ({len(missing)}):", *missing, sep="\n  ")
            ok = False
        if total.annotated < ANNOTATION_FLOOR * total.functions:
            print(f"fully annotated functions {_pct(total.annotated, total.functions)} < {ANNOTATION_FLOOR:.0%}")
            ok = False
        return 0 if ok else 1
    return 0


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
