"""Every model, layer and loss-weighting strategy has an ``Example::`` that runs.

The classes come from the registries (``available_models()``,
``available_strategies()``) and from the public ``nn.Module`` classes of
:mod:`mtl_reco.modeling.layers`, so a class added to either registry or to the
layers module without an example fails here. Classes whose module is not
under ``mtl_reco.`` are left out (not collected): they are registered from
outside the package, e.g. the throw-away model and strategy that
``throwaway_plugin.py`` adds during ``test_registry_additions.py``, whose
subprocess also requires every test carrying their names to pass, so a skip
would not do.

The example is the indented block after the ``Example::`` line of the class
docstring (dedented). It runs statement by statement with ``exec`` in a fresh
namespace holding ``torch`` and the documented class under its own name
(anything else is imported by the example), after ``torch.manual_seed(0)``.

Checked comments: a trailing comment that is a Python literal makes its line
an assertion.

* ``expr  # (8, 4, 16)`` -- a tuple of ints is a shape: ``expr`` (a tensor, a
  ``torch.Size`` or a sequence of ints) must have ``tuple(...)`` of its shape
  equal to it; ``# ()`` is a scalar.
* ``expr  # ['ctr', 'ctcvr']`` -- any other literal (list, dict, string,
  number, bool) is a value: ``expr == literal``.
* Any other comment (``# (B,)``, ``# (8,): one per row``) is prose and is not
  checked.

A checked comment must end a single expression statement (its last line);
one anywhere else fails, so that no expectation is silently ignored. Each
example must contain at least one checked comment.
"""

from __future__ import annotations

import ast
import inspect
import io
import textwrap
import tokenize
from typing import Any

import pytest
import torch
from torch import nn

from mtl_reco.modeling import layers
from mtl_reco.modeling.models.registry import available_models, get_model_class
from mtl_reco.modeling.weighting.registry import STRATEGIES, available_strategies


def _layer_classes() -> list[type]:
    return [
        obj
        for name, obj in vars(layers).items()
        if isinstance(obj, type)
        and issubclass(obj, nn.Module)
        and obj.__module__ == layers.__name__
        and not name.startswith("_")
    ]


def _documented_classes() -> list[Any]:
    classes: list[type] = [
        *(get_model_class(name) for name in available_models()),
        *(STRATEGIES[name] for name in available_strategies()),
        *_layer_classes(),
    ]
    return [
        pytest.param(cls, id=cls.__qualname__)
        for cls in classes
        if cls.__module__.startswith("mtl_reco.")
    ]


def example_block(cls: type) -> str | None:
    """The dedented block after ``Example::`` in ``cls``'s own docstring."""
    doc = cls.__dict__.get("__doc__")
    if not doc:
        return None
    lines = inspect.cleandoc(doc).splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "Example::":
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for text in lines[i + 1 :]:
            if text.strip() and len(text) - len(text.lstrip()) <= indent:
                break
            body.append(text)
        return textwrap.dedent("\n".join(body)).strip("\n") or None
    return None


def checked_comments(source: str) -> dict[int, object]:
    """Line number -> literal of every comment that parses as a Python literal."""
    found: dict[int, object] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        try:
            found[tok.start[0]] = ast.literal_eval(tok.string[1:].strip())
        except (ValueError, SyntaxError):
            continue  # prose
    return found


def _is_shape(value: object) -> bool:
    return isinstance(value, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def run_example(source: str, namespace: dict[str, Any], filename: str) -> int:
    """Run ``source`` in ``namespace``, asserting its checked comments.

    Returns the number of checked comments.
    """
    expected = checked_comments(source)
    checked = 0
    for stmt in ast.parse(source, filename).body:
        end = stmt.end_lineno or stmt.lineno
        here = [n for n in range(stmt.lineno, end + 1) if n in expected]
        if not here:
            module = ast.Module(body=[stmt], type_ignores=[])
            exec(compile(module, filename, "exec"), namespace)
            continue
        assert isinstance(stmt, ast.Expr) and here == [end], (
            f"{filename}, line {here[0]}: a checked comment must end an "
            "expression statement"
        )
        value = eval(compile(ast.Expression(stmt.value), filename, "eval"), namespace)
        want = expected.pop(end)
        got: object = value
        if _is_shape(want):
            got = tuple(value.shape if isinstance(value, torch.Tensor) else value)
        line = ast.get_source_segment(source, stmt)
        assert got == want, f"{filename}: {line} gave {got!r}, comment says {want!r}"
        checked += 1
    assert not expected, (
        f"{filename}: checked comments outside an expression statement on lines "
        f"{sorted(expected)}"
    )
    return checked


@pytest.mark.parametrize("cls", _documented_classes())
def test_class_docstring_example_runs_and_its_comments_hold(cls: type) -> None:
    source = example_block(cls)
    assert source, f"{cls.__module__}.{cls.__qualname__} has no Example:: block"
    torch.manual_seed(0)
    namespace: dict[str, Any] = {"torch": torch, cls.__name__: cls}
    filename = f"<{cls.__qualname__} example>"
    assert run_example(source, namespace, filename) >= 1, (
        f"{filename} has no checked comment (e.g. ``out.shape  # (4,)``)"
    )


def test_example_runner_checks_shapes_and_values() -> None:
    source = "x = torch.zeros(2, 3)\nx  # (2, 3)\nx.shape[0]  # 2\nx.sum()  # (B,)"
    assert run_example(source, {"torch": torch}, "<ok>") == 2
    with pytest.raises(AssertionError, match="comment says"):
        run_example("torch.zeros(2)  # (3,)", {"torch": torch}, "<bad shape>")
    with pytest.raises(AssertionError, match="must end an expression"):
        run_example("x = torch.zeros(2)  # (2,)", {"torch": torch}, "<bad place>")
