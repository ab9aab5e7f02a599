"""Response filtering to the permitted fields (data minimisation, research §3.2).

Field names may be dotted paths (``items.name``): a list on the way is filtered
element by element. Filtering fails closed: a response whose shape cannot carry
field names is refused rather than passed through.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class FieldFilterError(ValueError):
    """The response cannot be filtered to named fields; the node must not release it."""


def _tree(paths: Iterable[str]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        parts = path.split(".")
        for i, part in enumerate(parts):
            if node.get(part) is True:
                break  # a parent is already released whole
            if i == len(parts) - 1:
                node[part] = True
            else:
                node = node.setdefault(part, {})
    return root


def _apply(value: Any, tree: dict[str, Any], where: str) -> Any:
    if isinstance(value, list):
        return [_apply(item, tree, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in tree.items():
            if key in value:
                out[key] = value[key] if sub is True else _apply(value[key], sub, f"{where}.{key}")
        return out
    if value is None:
        return None
    raise FieldFilterError(
        f"cannot filter {type(value).__name__} at {where or '$'} to named fields"
    )


def filter_fields(response: Any, permitted: Iterable[str] | None) -> Any:
    """Return a copy of a JSON response keeping only ``permitted`` fields.

    ``permitted`` None means the service declares no fields: nothing to filter.
    An empty ``permitted`` releases empty objects. Raises :class:`FieldFilterError`
    if the top level (or a value on a path) is a scalar.
    """
    if permitted is None:
        return response
    return _apply(response, _tree(permitted), "")
