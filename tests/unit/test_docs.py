"""The docs site stays true: generated references match the code, every Python example in
the guides runs, and every public name of the model API, ``reactor.testing`` and
``reactor.client`` has a docstring.

A ```python block runs unless its first line says ``# docs: no-run`` (it needs a live
daemon, or is a fragment); such a block must still compile. ``# docs: needs torch`` runs
the block only where torch is installed. The blocks of one page share one namespace and run
in order, so a page can define a model in one block and test it in the next.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "tools"))

import docs_gen  # noqa: E402

BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)
# Pages other engineers own; their blocks are theirs to test.
NOT_OURS = {"releasing.md", "performance.md", "reliability.md"}


def guide_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md")
                  if p.name not in NOT_OURS and BLOCK.search(p.read_text(encoding="utf-8")))


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python block of a page."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in BLOCK.finditer(text)]


def _marker(code: str) -> str:
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    m = re.match(r"#\s*docs:\s*([\w -]+)", first)
    return m.group(1).strip() if m else ""


@pytest.mark.parametrize("name", sorted(docs_gen.PAGES))
def test_generated_reference_is_current(name: str) -> None:
    path = docs_gen.REFERENCE / name
    expected = docs_gen.PAGES[name]()
    assert path.exists(), f"{path.relative_to(ROOT)} is missing; run `make docs-gen`"
    assert path.read_text(encoding="utf-8") == expected, (
        f"{path.relative_to(ROOT)} differs from what the code gives; run `make docs-gen`")


def test_config_reference_names_every_key() -> None:
    from pydantic import BaseModel

    from reactor.config import Config

    text = (docs_gen.REFERENCE / "config.md").read_text(encoding="utf-8")
    for name, field in Config.model_fields.items():
        if name == "source":
            assert "`source`" not in text
            continue
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for key in ann.model_fields:
                assert f"| `{name}.{key}` |" in text
        else:
            assert f"| `{name}` |" in text


def test_cli_reference_names_every_command() -> None:
    text = (docs_gen.REFERENCE / "cli.md").read_text(encoding="utf-8")
    for path in ("reactor daemon start", "reactor daemon stop", "reactor daemon status",
                 "reactor daemon logs", "reactor daemon restart", "reactor run", "reactor send",
                 "reactor schema", "reactor monitor", "reactor init", "reactor config check"):
        assert f"`{path}`" in text


def test_docs_gen_check_mode_reports_a_stale_page(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docs_gen, "REFERENCE", tmp_path)
    assert docs_gen.main(["--check"]) == 1
    assert docs_gen.main([]) == 0
    assert docs_gen.main(["--check"]) == 0
    (tmp_path / "cli.md").write_text("edited by hand\n")
    assert docs_gen.main(["--check"]) == 1


def test_guides_have_python_blocks() -> None:
    pages = {p.relative_to(DOCS).as_posix() for p in guide_pages()}
    assert "guide/models.md" in pages


@pytest.mark.parametrize("page", guide_pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_python_blocks_run(page: Path) -> None:
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for line, code in python_blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        marker = _marker(code)
        if marker.startswith("no-run"):
            # It may be a method cut from a class: compile it without the marker, dedented.
            body = code.lstrip().split("\n", 1)[1] if "\n" in code.strip() else ""
            compile(textwrap.dedent(body), where, "exec")
            continue
        compiled = compile(code, where, "exec")
        if marker.startswith("needs torch"):
            try:
                import torch  # noqa: F401
            except ImportError:
                continue
        exec(compiled, namespace)


def test_guide_example_model_runs_in_model_runner() -> None:
    """The guide's first model, taken from the page, passes through ``reactor.testing``."""
    import numpy as np

    from reactor.testing import ModelRunner

    page = DOCS / "guide" / "models.md"
    namespace: dict[str, Any] = {"__name__": "docs_guide"}
    _, code = python_blocks(page)[0]
    exec(compile(code, str(page), "exec"), namespace)
    model = namespace["Tint"]
    assert set(model.commands) == {"set_gain", "set_mode"}
    runner = ModelRunner(model, width=32, height=16)
    frame = np.full((16, 32, 3), 90, np.uint8)
    out = runner.run(inputs=[frame] * 3, commands={1: ("set_gain", {"gain": 3.0})})
    assert [int(f[0, 0, 0]) for f in out] == [90, 255, 255]


# --- docstrings ------------------------------------------------------------------------

PUBLIC_MODULES = {
    "reactor": None,  # __all__
    "reactor.model": None,
    "reactor.testing": ["ModelRunner"],
    "reactor.client": None,
}


def _public_names() -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for mod_name, names in PUBLIC_MODULES.items():
        mod = importlib.import_module(mod_name)
        out.append((mod_name, mod))
        for name in names or mod.__all__:
            if name.startswith("__") or name == "Field":  # Field is pydantic's own
                continue
            obj = getattr(mod, name)
            out.append((f"{mod_name}.{name}", obj))
            if inspect.isclass(obj) and obj.__module__.startswith("reactor"):
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(value, classmethod | staticmethod):
                        value = value.__func__
                    fields = getattr(obj, "__dataclass_fields__", {})
                    if attr in fields:
                        continue  # a dataclass field's default, not a method
                    if inspect.isfunction(value) or isinstance(value, property):
                        out.append((f"{mod_name}.{name}.{attr}", value))
    return out


def test_public_names_have_docstrings() -> None:
    missing = [name for name, obj in _public_names() if not (inspect.getdoc(obj) or "").strip()]
    assert not missing, f"public names without a docstring: {', '.join(missing)}"


def test_getting_started_edit_and_test_work(tmp_path: Path) -> None:
    """Getting started's edit to the scaffolded model, and its replacement test, work as
    the page says: applied to a fresh `reactor init` folder, the test passes."""
    import subprocess

    from reactor.scaffold import scaffold

    root = scaffold("my_model", tmp_path)
    blocks = [code for _, code in python_blocks(DOCS / "getting-started.md")]
    edit, test = (code.split("\n", 1)[1] for code in blocks[:2])
    model = root / "model.py"
    text = model.read_text()
    model.write_text(text[: text.index("    def start_session")] + edit)
    test_file = root / "test_model.py"
    text = test_file.read_text()
    test_file.write_text(text[: text.index("def test_")] + test)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(test_file)], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
