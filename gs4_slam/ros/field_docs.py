"""One-line descriptions of configuration fields, for ROS parameter descriptors.

The config dataclasses document their fields in several styles (an ``Attributes:``
section of the docstring, a trailing ``# comment``, a ``#:`` comment above); the
YAML overlays comment their keys too. Reading all of them keeps one source of truth:
a description written next to a field reaches ``ros2 param describe`` unchanged.
Precedence: ``field(metadata={"description": ...})``, docstring, trailing comment,
``#:`` comment, YAML comment.
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
import typing
from pathlib import Path

_ATTRIBUTE = re.compile(r"^(\w+(?:\s*,\s*\w+)*)\s*(?:\([^)]*\))?:\s*(.*)$")
_YAML_KEY = re.compile(r"^(\s*)([\w.-]+)\s*:(.*)$")


def field_descriptions(cls: type, yaml_comments: dict[str, str] | None = None, prefix: str = "") -> dict[str, str]:
    """``{"dotted.name": description}`` for every leaf field of dataclass ``cls`` (recursively).

    Fields without any documentation get an empty string.
    """
    hints = typing.get_type_hints(cls)
    documented = {**_source_comments(cls), **_docstring_attributes(cls)}
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(field_descriptions(hints[f.name], yaml_comments, f"{name}."))
            continue
        text = f.metadata.get("description") or documented.get(f.name) or (yaml_comments or {}).get(name, "")
        out[name] = _one_line(text)
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _docstring_attributes(cls: type) -> dict[str, str]:
    """Google-style ``Attributes:`` entries; ``width, height: size`` documents both."""
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:") + 1
    except StopIteration:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    indent = None
    for line in lines[start:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:
            break
        match = _ATTRIBUTE.match(line.strip()) if depth == indent else None
        if match:
            names = [n.strip() for n in match.group(1).split(",")]
            for name in names:
                out[name] = match.group(2)
        else:
            for name in names:
                out[name] += " " + line.strip()
    return out


def _source_comments(cls: type) -> dict[str, str]:
    """Trailing ``# ...`` comments of field lines, else ``#: ...`` lines directly above."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    line_field: dict[int, str] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError):
        return {}
    for prev, tok, nxt in zip(tokens, tokens[1:], tokens[2:]):
        at_line_start = prev.type in (tokenize.INDENT, tokenize.NEWLINE, tokenize.NL, tokenize.DEDENT)
        if tok.type == tokenize.NAME and nxt.string == ":" and at_line_start and tok.start[1] == 4:
            line_field[tok.start[0]] = tok.string
            if pending:
                out[tok.string] = " ".join(pending)
            pending = []
        elif tok.type == tokenize.COMMENT:
            if tok.start[0] in line_field:
                out[line_field[tok.start[0]]] = tok.string.lstrip("#").strip()
            elif tok.string.startswith("#:"):
                pending.append(tok.string[2:].strip())
            else:
                pending = []
    return out


def yaml_comments(path: str | Path) -> dict[str, str]:
    """``{"dotted.key": trailing comment}`` of a YAML file (nesting by indentation)."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in Path(path).read_text().splitlines():
        match = _YAML_KEY.match(line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if "#" in rest:
            out[".".join(k for _, k in stack)] = rest.split("#", 1)[1].strip()
    return out
