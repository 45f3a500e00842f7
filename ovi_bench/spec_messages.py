"""How a run spec's problems are found and worded: the field path of each problem, "did you mean" for unknown
fields, and values no field may hold (NaN, control characters, nesting too deep), found without recursion."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ValidationError

from ovi_bench.text import did_you_mean, short_repr
from ovi_bench.text import string_problem as _string_problem

MAX_NESTING = 32
"""Deepest nesting of tables and arrays a spec may have; real specs use 4. Deeper input is refused before
validation, whose recursion (and the error messages' reprs) would otherwise exhaust Python's stack."""


def format_validation_error(
    error: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    lines = []
    for problem in error.errors():
        location = field_path((prefix, *problem["loc"]) if prefix else tuple(problem["loc"]))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden" and model is not None:
            unknown = str(problem["loc"][-1])
            fields = list(fields_at(model, problem["loc"][:-1]))
            hint = did_you_mean(unknown, fields)
            message = f"unknown field.{hint} Valid fields here: {', '.join(fields)}."
        elif problem["type"] == "missing":
            message = "this field is required."
        elif "input" in problem and problem["loc"] and problem["type"] not in ("model_type",):
            message = f"{message} (got {short_repr(problem['input'])})"
        lines.append(f"  {location}: {message}")
    return "invalid run spec:\n" + "\n".join(lines)


def fields_at(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model found at `location`, for "did you mean" hints."""
    current: Any = model
    for part in location:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part)) if isinstance(current, type) else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return list(current.model_fields)


def field_path(parts: tuple[str | int, ...]) -> str:
    """`priors[0].params.steps`; a key that would vanish or blur in that form (empty, spaced) is quoted, and a long
    one shortened."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        quote = part == "" or len(part) > 80 or any(char.isspace() for char in part)
        shown = short_repr(part) if quote else part
        text += f".{shown}" if text else shown
    return text or "(top level)"


def find_unrepresentable_value(data: Any, root: str = "") -> str | None:
    """The first value that no field may hold, as "path: problem and fix", or None.

    Walks with an explicit stack (no recursion) and stops at MAX_NESTING, so arbitrarily deep or even
    self-referencing input is reported instead of crashing: NaN and inf (fingerprints are canonical JSON, which has
    neither), NUL characters, lone surrogates, control characters.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, (root,) if root else ())]
    while stack:
        value, parts = stack.pop()
        where = field_path(parts)
        if len(parts) > MAX_NESTING:
            return (
                f"{where}: nested more than {MAX_NESTING} levels deep; a run spec needs a handful of levels"
            )
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where}: {value} is not allowed; give a finite number"
        if isinstance(value, str):
            problem = _string_problem(value)
            if problem:
                return f"{where}: the text {short_repr(value)} {problem}"
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if isinstance(key, str):
                    problem = _string_problem(key)
                    if problem:
                        return f"{where}: the key {short_repr(key)} {problem}"
                stack.append((item, (*parts, str(key))))
        elif isinstance(value, (list, tuple)):
            for index in reversed(range(len(value))):
                stack.append((value[index], (*parts, index)))
    return None
