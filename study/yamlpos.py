"""YAML loading that remembers where every key and value was written, so errors can name `file:line:col`.

`load_yaml` returns plain Python data plus a `Positions` map from key paths (tuples of keys and list
indices) to 1-based (line, column). Duplicate keys, which PyYAML silently lets the last one win, are
refused: in a sweep file they are almost always a mistake.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from study.errors import InputError

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

Path_ = tuple[str | int, ...]


@dataclass
class Positions:
    """Where each key (and its value) sits in the file; paths are tuples such as ("sweep", "tp", 1)."""

    file: str
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int], *, at_value: bool = False) -> tuple[int | None, int | None]:
        """The closest known position for `path`: itself, else its nearest written ancestor."""
        table = self.values if at_value else self.keys
        path = tuple(path)
        while path:
            if path in table:
                return table[path]
            if path in self.keys:
                return self.keys[path]
            path = path[:-1]
        return self.values.get((), (1, 1))

    def error(
        self, path: Sequence[str | int], message: str, *, at_value: bool = True, hint: str | None = None
    ) -> InputError:
        """An InputError naming file:line:col and the dotted key path."""
        line, col = self.locate(path, at_value=at_value)
        return InputError(message, file=self.file, line=line, col=col, key=dotted(path) or None, hint=hint)


def dotted(path: Iterable[str | int]) -> str:
    """`("sweep", "tp", 1)` -> `sweep.tp[1]`: the spelling errors use for key paths."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """`did you mean `nodes`?` for a misspelt key, or None when nothing is close."""
    matches = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None


# An experiment or system file is small: once its aliases are expanded it holds at most this many
# values. A "billion laughs" file (aliases of aliases) or an alias inside its own anchor is refused
# before anything expands it.
MAX_YAML_VALUES = 100_000
# No count, size or time needs more digits than this; longer numbers are refused at their position
# (Python would refuse to convert more than 4,300 digits anyway, without saying where).
MAX_NUMBER_CHARS = 100
_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases refer to themselves or expand past MAX_YAML_VALUES (an
    explicit stack: deep nesting cannot exhaust Python's recursion either)."""

    def fail(node: yaml.Node, message: str) -> None:
        raise InputError(message, file=file, line=node.start_mark.line + 1, col=node.start_mark.column + 1)

    size: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            visiting.discard(key)
            size[key] = min(1 + sum(size[id(c)] for c in _children(node)), MAX_YAML_VALUES + 1)
            if size[key] > MAX_YAML_VALUES:
                fail(node, f"expands to more than {MAX_YAML_VALUES:,} values through its aliases")
            continue
        if key in size:
            continue
        if isinstance(node, yaml.ScalarNode) and len(node.value) > MAX_NUMBER_CHARS:
            if node.tag in (_INT_TAG, _FLOAT_TAG):
                fail(
                    node,
                    f"a number written with {len(node.value):,} characters; at most {MAX_NUMBER_CHARS:,}",
                )
        visiting.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in visiting:
                fail(child, "an alias refers to the value that contains it (a recursive anchor)")
            if id(child) not in size:
                stack.append((child, False))


def load_yaml(path: str | Path, text: str | None = None) -> tuple[Any, Positions]:
    """Parse one YAML document; raise InputError with the position of any syntax error or duplicate key."""
    file = str(path)
    if text is None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise InputError("no such file", file=file) from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            raise InputError(
                f"not UTF-8 text: byte 0x{data[exc.start]:02x} {exc.reason}", file=file, line=line, col=col
            ) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        positions = Positions(file)
        if node is None:
            return None, positions
        _check_expansion(node, file)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise InputError(
            f"invalid YAML: {exc.problem or exc.context}", file=file, line=line, col=col
        ) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML refuses (a NUL byte, a control character): say where, as for syntax errors.
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        raise InputError(
            f"invalid YAML: unacceptable character #x{code:04x}: {exc.reason}",
            file=file,
            line=line,
            col=col,
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    _walk(node, (), positions, loader)
    return data, positions


def _walk(node: yaml.Node, path: Path_, positions: Positions, loader: Any) -> None:
    positions.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise InputError(
                    "keys must be plain scalars",
                    file=positions.file,
                    line=key_node.start_mark.line + 1,
                    col=key_node.start_mark.column + 1,
                    key=dotted(path) or None,
                )
            key = (
                loader.construct_object(key_node)
                if key_node.tag != "tag:yaml.org,2002:str"
                else key_node.value
            )
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise InputError(
                    f"duplicate key `{key}` (first written on line {first})",
                    file=positions.file,
                    line=key_node.start_mark.line + 1,
                    col=key_node.start_mark.column + 1,
                    key=dotted((*path, key)),
                )
            seen[key] = key_node
            child = (*path, key)
            positions.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, child, positions, loader)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            positions.keys[(*path, index)] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(item, (*path, index), positions, loader)
