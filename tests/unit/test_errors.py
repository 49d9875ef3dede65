"""The ReactorError tree: one module defines every exception class reactor has, its
docstring shows them all, and the old import paths give the very same classes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest

import reactor
import reactor.errors as errors
from reactor.media.convert import check_rgb

# Modules that need an optional dependency this machine may not have.
OPTIONAL = {"cupy"}


def _reactor_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(reactor.__path__, "reactor."):
        if info.name.endswith("_pb2"):
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name not in OPTIONAL:
                raise
            continue
        names.append(info.name)
    return names


def _exception_classes(module_name: str) -> list[type[BaseException]]:
    module = importlib.import_module(module_name)
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__.startswith("reactor.")
    ]


def test_every_exception_class_in_reactor_is_defined_in_reactor_errors() -> None:
    modules = _reactor_modules()
    assert len(modules) > 50, modules  # the walk found the package, not a stub of it
    elsewhere = {
        f"{name}.{cls.__name__} (defined in {cls.__module__})"
        for name in modules
        for cls in _exception_classes(name)
        if cls.__module__ != "reactor.errors"
    }
    assert not elsewhere, sorted(elsewhere)


def test_every_class_in_reactor_errors_derives_from_reactor_error() -> None:
    classes = set(_exception_classes("reactor.errors"))
    assert len(classes) >= 18, classes
    outside = [cls.__name__ for cls in classes if not issubclass(cls, errors.ReactorError)]
    assert not outside, outside
    roots = [cls.__name__ for cls in classes if Exception in cls.__bases__]
    assert roots == ["ReactorError"], roots


def _tree_lines() -> list[str]:
    """The lines of the tree drawn in reactor.errors' docstring (the indented block)."""
    doc = errors.__doc__ or ""
    lines = [line for line in doc.split("::", 1)[1].splitlines() if line.strip()]
    return lines[: next(i for i, line in enumerate(lines) if not line.startswith("    "))]


def test_the_docstring_tree_names_every_class_and_all_exports_them() -> None:
    tree = "\n".join(_tree_lines())
    classes = {cls.__name__ for cls in _exception_classes("reactor.errors")}
    missing = sorted(name for name in classes if not re.search(rf"\b{name}\b", tree))
    assert not missing, missing
    assert set(errors.__all__) == classes | {"FrameFormatError"}


def test_the_docstring_tree_draws_each_class_under_its_base() -> None:
    lines = _tree_lines()
    depth: dict[str, int] = {}
    parents: list[str] = []
    for line in lines:
        body = line[4:]
        name_at = len(body) - len(body.lstrip("│├└─ "))
        if not body[name_at:][:1].isupper():
            continue  # the continuation of a description
        name = body[name_at:].split()[0]
        level = name_at // 4
        depth[name] = level
        del parents[level:]
        if parents:
            cls = getattr(errors, name)
            assert cls.__bases__[0] is getattr(errors, parents[-1]), (name, parents)
        parents.append(name)
    assert depth["ReactorError"] == 0 and depth["ProducerGoneError"] == 3, depth


def test_old_import_paths_give_the_same_classes() -> None:
    from reactor.client import WhipError as client_whip
    from reactor.ipc import ProducerGoneError, RingClosedError, RingError, RingTimeout
    from reactor.ipc.errors import RingSpaceError
    from reactor.media.convert import FrameFormatError
    from reactor.media.encoder import EncoderError
    from reactor.media.links import LinkError
    from reactor.media.sdp import SdpError
    from reactor.media.whip_client import WhipError

    assert FrameFormatError is errors.FrameError is reactor.FrameError
    assert EncoderError is errors.EncoderError
    assert SdpError is errors.SdpError
    assert LinkError is errors.LinkError
    assert WhipError is client_whip is errors.WhipError
    assert RingError is errors.RingError
    assert RingTimeout is errors.RingTimeout
    assert RingClosedError is errors.RingClosedError
    assert ProducerGoneError is errors.ProducerGoneError
    assert RingSpaceError is errors.RingSpaceError


def test_errors_that_were_builtin_errors_still_are() -> None:
    assert issubclass(errors.LinkError, ValueError)
    assert issubclass(errors.RingTimeout, TimeoutError)


def test_a_bad_array_for_a_conversion_raises_frame_error_under_either_name() -> None:
    with pytest.raises(errors.FrameError, match="dtype uint8"):
        check_rgb(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(errors.FrameFormatError, match="even"):
        check_rgb(np.zeros((3, 4, 3), dtype=np.uint8))



def test_the_model_api_page_draws_the_same_tree() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "api" / "model.md").read_text()
    block = page.split("```text\nReactorError\n", 1)[1].split("```", 1)[0]
    drawn = ["ReactorError", *block.rstrip("\n").split("\n")]
    assert drawn == [line[4:] for line in _tree_lines()]
