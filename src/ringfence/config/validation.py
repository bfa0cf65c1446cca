"""Validating parsed data against a model, with pydantic's errors said for people.

:func:`validate_document` raises :class:`ringfence.errors.ConfigError` with one
:class:`~ringfence.errors.Problem` per mistake: the file, the line (the nearest enclosing key
or item that has one), the field path as written in the file (``hosts[1].memory``) and a
message saying what is expected there (unknown fields get the allowed ones and a close match,
literals their choices, types what was expected and what was given).
:class:`~ringfence.config.problems.FieldProblems` raised by model validators become one problem
per relative path.
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ringfence.config.problems import FieldProblems, LineMap, Loc, _line_for, format_path
from ringfence.errors import ConfigError, Problem, describe_value

_M = TypeVar("_M", bound=BaseModel)
_MISSING = object()


def _strip_annotation(annotation: object) -> object:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin is Union or origin is types.UnionType:
            args = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _model_fields(model: type[BaseModel]) -> dict[str, Any]:
    return {(field.alias or name): field for name, field in model.model_fields.items()}


def _annotation_at(root: type[BaseModel], loc: Loc) -> object:
    annotation: object = root
    for segment in loc:
        annotation = _strip_annotation(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = _model_fields(annotation).get(str(segment))
            if field is None:
                return None
            annotation = field.annotation
            continue
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is list and isinstance(segment, int) and args:
            annotation = args[0]
        elif origin is dict and isinstance(segment, str) and len(args) == 2:
            annotation = args[1]
        else:
            return None
    return _strip_annotation(annotation)


def _resolve_loc(loc: Loc, data: object) -> Loc:
    """Map pydantic's error location onto the data as written.

    Stops at a scalar (pydantic may add segments below it, such as list indexes after a single
    role string was made a list, or union member tags) and keeps segments that name absent keys
    (missing required fields).
    """
    out: list[str | int] = []
    current: object = data
    for segment in loc:
        if current is _MISSING:
            out.append(segment)
        elif isinstance(current, dict):
            out.append(segment)
            current = current.get(segment, _MISSING)
        elif isinstance(current, list) and isinstance(segment, int):
            out.append(segment)
            current = current[segment] if 0 <= segment < len(current) else _MISSING
        elif isinstance(current, list | str | int | float | bool) or current is None:
            break
        else:
            out.append(segment)
            current = _MISSING
    return tuple(out)


def _type_message(expected: str, value: object) -> str:
    message = f"expected {expected}, got {describe_value(value)}"
    if expected == "a string" and isinstance(value, int | float) and not isinstance(value, bool):
        message += " (put it in quotes)"
    return message


_TYPE_EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (key: value pairs)",
    "model_type": "a mapping (key: value pairs)",
    "model_attributes_type": "a mapping (key: value pairs)",
}


def _humanise(error: Any, root: type[BaseModel]) -> str:
    kind: str = error["type"]
    loc: Loc = tuple(error["loc"])
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing" and loc:
        return f"missing required field {loc[-1]!r}"
    if kind == "extra_forbidden" and loc:
        name = str(loc[-1])
        parent = _annotation_at(root, loc[:-1])
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            allowed = list(_model_fields(parent))
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            if close:
                return f"unknown field {name!r}; did you mean {close[0]!r}?"
            return f"unknown field {name!r}; allowed fields: {', '.join(allowed)}"
        return f"unknown field {name!r}"
    if kind == "literal_error":
        annotation = _annotation_at(root, loc)
        if get_origin(annotation) is Literal:
            choices = [str(choice) for choice in get_args(annotation)]
            message = (
                f"{describe_value(value)} is not allowed here; expected one of: "
                f"{', '.join(choices)}"
            )
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            return message
        return f"{describe_value(value)} is not allowed here; expected {ctx.get('expected')}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in _TYPE_EXPECTED:
        return _type_message(_TYPE_EXPECTED[kind], value)
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}, got {describe_value(value)}"
    if kind == "too_short":
        least = ctx.get("min_length")
        return (
            f"needs at least {least} item{'s' if least != 1 else ''}, got "
            f"{ctx.get('actual_length')}"
        )
    if kind == "too_long":
        return f"allows at most {ctx.get('max_length')} items, got {ctx.get('actual_length')}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return (
            f"must be at most {ctx.get('max_length')} characters long, got "
            f"{len(value) if isinstance(value, str) else 'more'}"
        )
    return str(error.get("msg", "invalid value"))



def validate_document(
    model: type[_M],
    data: object,
    *,
    file: str | None = None,
    lines: LineMap | None = None,
    what: str = "document",
) -> _M:
    """Validate *data* (parsed from *file*) as *model*; :class:`ConfigError` on any problem.

    Every problem names the file, the line (from *lines*, falling back to the nearest enclosing
    key or item that has one), the field path as written in the file, and what is expected.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of {what} fields at the top level, got {describe_value(data)}",
            file=file,
            line=_line_for((), lines),
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems: list[Problem] = []
        seen: set[tuple[str, str]] = set()

        def add(loc: Loc, message: str) -> None:
            path = format_path(loc)
            if (path, message) not in seen:
                seen.add((path, message))
                problems.append(
                    Problem(file=file, line=_line_for(loc, lines), path=path, message=message)
                )

        for error in exc.errors():
            loc = tuple(error["loc"])
            raised = (error.get("ctx") or {}).get("error")
            if isinstance(raised, FieldProblems):
                for relative, message in raised.problems:
                    add((*_resolve_loc(loc, data), *relative), message)
            else:
                add(_resolve_loc(loc, data), _humanise(error, model))
        problems.sort(key=lambda problem: (problem.line is None, problem.line or 0))
        raise ConfigError(problems=problems) from None
