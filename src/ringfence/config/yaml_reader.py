"""Reading a YAML file with the line of every key and list item.

:func:`read_yaml` and :func:`parse_yaml` raise :class:`ringfence.errors.ConfigError` naming the
file and line for unreadable files, syntax errors, duplicate keys, non-string keys, an empty
document, nesting deeper than :data:`~ringfence.config.fields.MAX_YAML_DEPTH` and alias bombs.

The YAML reader uses the YAML 1.2 core scalars rather than PyYAML's YAML 1.1 defaults, so that
``on``/``off``/``yes``/``no`` stay strings (``on: true`` is a field of the ``maintenance`` event),
``010`` is ten, and an unquoted MAC address such as ``52:54:00:00:00:01`` is not read as a
base-60 integer. Mapping keys are always strings.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ringfence.config.fields import MAX_ALIAS_VALUES, MAX_YAML_BYTES, MAX_YAML_DEPTH
from ringfence.config.problems import LineMap, Loc, _line_for
from ringfence.errors import ConfigError

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars (see the module docstring), which refuses
    nesting deeper than :data:`MAX_YAML_DEPTH` while it composes (PyYAML's composer recurses
    once per level: without a bound, ``[[[[...`` ends in a RecursionError)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _YamlShapeError(_too_deep(), mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _too_deep() -> str:
    return (
        f"lists and mappings nest more than {MAX_YAML_DEPTH} levels deep here; no ringfence "
        "file needs that many (a generated or hostile file?)"
    )


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in (_NULL_TAG, _MERGE_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^[-+]?[0-9]+$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9]+[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_decimal_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(None, None, "expected an integer", node.start_mark)
    return int(str(node.value))


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_decimal_int)


class _YamlShapeError(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Expansion:
    """What aliases have added so far: every node reached a second time (through an alias)
    counts, with everything below it, against :data:`MAX_ALIAS_VALUES`."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.repeated = 0

    def visit(self, node: yaml.Node, via_alias: bool, line: int | None) -> bool:
        """Record a visit of *node*; True when it (or an ancestor) was reached by an alias."""
        again = via_alias or id(node) in self.seen
        self.seen.add(id(node))
        if again:
            self.repeated += 1
            if self.repeated > MAX_ALIAS_VALUES:
                raise _YamlShapeError(
                    f"aliases (*name) expand to more than {MAX_ALIAS_VALUES:,} values; write "
                    "the values out, or use fewer aliases (a YAML alias bomb?)",
                    line,
                )
        return again


def _node_to_python(
    loader: _Loader,
    node: yaml.Node,
    loc: Loc,
    lines: LineMap,
    active: set[int],
    expansion: _Expansion,
    via_alias: bool = False,
) -> object:
    line = _line_for(loc, lines)
    if len(loc) >= MAX_YAML_DEPTH:
        # an alias can nest a list in itself again and again: the composer's bound does not
        # see that, the expanded document does
        raise _YamlShapeError(_too_deep(), line)
    via_alias = expansion.visit(node, via_alias, line)
    if isinstance(node, yaml.MappingNode):
        if id(node) in active:
            raise _YamlShapeError(
                "an alias refers to a mapping that contains it", node.start_mark.line + 1
            )
        active.add(id(node))
        own: dict[str, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise _YamlShapeError(
                    "mapping keys must be plain names, not lists or mappings",
                    key_node.start_mark.line + 1,
                )
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in own:
                raise _YamlShapeError(
                    f"duplicate key {key!r} (first given on line {own[key]})", line
                )
            own[key] = line
        loader.flatten_mapping(node)
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _YamlShapeError(
                    "mapping keys must be plain names, not lists or mappings",
                    key_node.start_mark.line + 1,
                )
            key = str(key_node.value)
            if not via_alias:
                lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = _node_to_python(
                loader, value_node, (*loc, key), lines, active, expansion, via_alias
            )
        active.discard(id(node))
        return result
    if isinstance(node, yaml.SequenceNode):
        if id(node) in active:
            raise _YamlShapeError(
                "an alias refers to a list that contains it", node.start_mark.line + 1
            )
        active.add(id(node))
        items: list[object] = []
        for index, item in enumerate(node.value):
            if not via_alias:
                lines[(*loc, index)] = item.start_mark.line + 1
            items.append(
                _node_to_python(loader, item, (*loc, index), lines, active, expansion, via_alias)
            )
        active.discard(id(node))
        return items
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, *, file: str | None = None) -> tuple[object, LineMap]:
    """Parse one YAML document; return the data and the line of every key and list item.

    Raises :class:`ConfigError` (naming *file* and the line) for syntax errors, duplicate keys,
    non-string keys, more than one document, an empty document, nesting deeper than
    :data:`MAX_YAML_DEPTH` and aliases that expand to more than :data:`MAX_ALIAS_VALUES`
    values.
    """
    lines: LineMap = {}
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the file is empty; expected a mapping of fields", file=file)
        lines[()] = node.start_mark.line + 1
        data = _node_to_python(loader, node, (), lines, set(), _Expansion())
    except _YamlShapeError as exc:
        raise ConfigError(exc.message, file=file, line=exc.line) from None
    except RecursionError:
        # Last line of defence: PyYAML's merge-key flattening (<<: *a, where a merges another,
        # and so on) recurses once per link of such a chain.
        raise ConfigError(
            f"merge keys (<<) or aliases chain more than {MAX_YAML_DEPTH} levels deep", file=file
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = exc.context
        if exc.context_mark is not None and mark is not None and context:
            if exc.problem and "<stream end>" in exc.problem:
                # "got <stream end>" points past the last line: show where the open thing began
                mark = exc.context_mark
            elif exc.context_mark.line != mark.line:
                context += f" started on line {exc.context_mark.line + 1}"
        parts = [part for part in (context, exc.problem) if part]
        message = "invalid YAML: " + ("; ".join(parts) if parts else "syntax error")
        if exc.problem and "'\\t'" in exc.problem:
            message += " (indent with spaces, not tabs)"
        raise ConfigError(
            message, file=file, line=mark.line + 1 if mark is not None else None
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    return data, lines


def read_yaml(path: str | Path) -> tuple[object, LineMap]:
    """Read and parse the YAML file *path*; :class:`ConfigError` if it cannot be read or parsed."""
    file = str(path)
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(
                f"the file is larger than {MAX_YAML_BYTES >> 20} MiB; a cluster or scenario "
                "file is much smaller (is this the right file?)",
                file=file,
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except IsADirectoryError:
        raise ConfigError("is a directory; expected a YAML file", file=file) from None
    except PermissionError:
        raise ConfigError("cannot read the file: permission denied", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (bad byte at offset {exc.start}); expected a YAML file", file=file
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=file) from None
    return parse_yaml(text, file=file)
