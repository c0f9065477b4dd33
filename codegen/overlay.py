"""Apply an OpenAPI Overlay 1.0 document to a spec.

An overlay is a list of actions, each a JSONPath `target` plus either `update` (merged into
every node the target selects) or `remove: true` (deletes those nodes). Actions run in order,
each on the result of the one before, so a later action sees an earlier rename.

Only the JSONPath we use is implemented (a dependency for five selector kinds is not worth it):

    $                    the document root
    .name  ['name']      a member; the bracket form takes any key, e.g. ['/v1/agents/{agent_id}']
    .*  [*]              every member of an object or element of an array
    [0]                  an array element (negative counts from the end)
    ..name  ..*  ..[…]   the same selector applied to the node and every node below it
    [?@.key == 'x']      the members/elements that are objects whose `key` equals a literal
    [?@ == 'x']          the members/elements that equal a literal (a tag in a `tags` list)

Filters may be written `[?(...)]` as well, and their literal may be a quoted string, a
number, true, false or null.

A target that selects nothing is an error naming the action: an overlay that no longer fits
its spec must fail loudly instead of quietly fixing nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class OverlayError(ValueError):
    """The overlay is malformed, or one of its actions does not fit the document."""


@dataclass(frozen=True)
class Member:
    name: str


@dataclass(frozen=True)
class Index:
    index: int


@dataclass(frozen=True)
class Wildcard:
    pass


@dataclass(frozen=True)
class Descendants:
    """Stands for the node itself and all nodes below it; the next selector applies to each."""


@dataclass(frozen=True)
class Filter:
    key: str | None  # None compares the member/element itself
    value: Any


Selector = Member | Index | Wildcard | Descendants | Filter

_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_LITERAL = rf"{_QUOTED}|-?\d+(?:\.\d+)?|true|false|null"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKENS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], list[Selector]]]] = [
    (re.compile(r"\.\.\*"), lambda m: [Descendants(), Wildcard()]),
    (re.compile(rf"\.\.({_NAME})"), lambda m: [Descendants(), Member(m[1])]),
    (re.compile(r"\.\.(?=\[)"), lambda m: [Descendants()]),
    (re.compile(r"\.\*|\[\*\]"), lambda m: [Wildcard()]),
    (re.compile(rf"\.({_NAME})"), lambda m: [Member(m[1])]),
    (re.compile(rf"\[\s*({_QUOTED})\s*\]"), lambda m: [Member(_literal(m[1]))]),
    (re.compile(r"\[\s*(-?\d+)\s*\]"), lambda m: [Index(int(m[1]))]),
    (
        re.compile(rf"\[\?\s*(\()?\s*@(?:\.({_NAME}))?\s*==\s*({_LITERAL})\s*(?(1)\))\s*\]"),
        lambda m: [Filter(m[2], _literal(m[3]))],
    ),
]


def _literal(text: str) -> Any:
    """A JSONPath literal as a Python value; single-quoted strings are read as JSON strings."""
    if text.startswith("'"):
        body = text[1:-1].replace("\\'", "'").replace('"', '\\"')
        return json.loads(f'"{body}"')
    return json.loads(text)


def parse_path(target: str) -> list[Selector]:
    """Split a JSONPath expression into selectors, or raise `OverlayError` at the first bad character."""
    if not target.startswith("$"):
        raise OverlayError(f"JSONPath {target!r} must start with '$'")
    selectors: list[Selector] = []
    pos = 1
    while pos < len(target):
        for pattern, build in _TOKENS:
            match = pattern.match(target, pos)
            if match:
                selectors.extend(build(match))
                pos = match.end()
                break
        else:
            raise OverlayError(f"JSONPath {target!r}: unsupported syntax at {target[pos:]!r}")
    return selectors


# A selected node is (parent, key, value); the root has no parent. The parent and key are
# what `remove` needs, and what `update` needs when the node is a scalar it must not touch.
Node = tuple[Any, Any, Any]


def _children(value: Any) -> list[Node]:
    if isinstance(value, dict):
        return [(value, key, child) for key, child in value.items()]
    if isinstance(value, list):
        return [(value, index, child) for index, child in enumerate(value)]
    return []


def _descendants(node: Node) -> list[Node]:
    found = [node]
    for child in _children(node[2]):
        found.extend(_descendants(child))
    return found


def _equal(a: Any, b: Any) -> bool:
    # JSON's true is not 1, though Python's True == 1.
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _matches(value: Any, selector: Filter) -> bool:
    if selector.key is None:
        return _equal(value, selector.value)
    return isinstance(value, dict) and selector.key in value and _equal(value[selector.key], selector.value)


def _select(node: Node, selector: Selector) -> list[Node]:
    _, _, value = node
    if isinstance(selector, Descendants):
        return _descendants(node)
    if isinstance(selector, Member):
        if isinstance(value, dict) and selector.name in value:
            return [(value, selector.name, value[selector.name])]
        return []
    if isinstance(selector, Index):
        if isinstance(value, list) and -len(value) <= selector.index < len(value):
            index = selector.index % len(value)
            return [(value, index, value[index])]
        return []
    if isinstance(selector, Wildcard):
        return _children(value)
    return [child for child in _children(value) if _matches(child[2], selector)]


def query(document: Any, target: str) -> list[Node]:
    """Every (parent, key, value) the JSONPath `target` selects in `document`, in document order."""
    nodes: list[Node] = [(None, None, document)]
    for selector in parse_path(target):
        nodes = [found for node in nodes for found in _select(node, selector)]
    return nodes


def clone(value: Any) -> Any:
    """A deep copy that never shares nodes.

    `copy.deepcopy` keeps YAML aliases aliased, so an update through one path would show up
    at every other path that aliased the same node.
    """
    if isinstance(value, dict):
        return {key: clone(child) for key, child in value.items()}
    if isinstance(value, list):
        return [clone(child) for child in value]
    return value


def merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge `update` into `target` in place, as Overlay 1.0 says.

    Objects merge recursively, arrays are concatenated, anything else is replaced. To replace
    an array outright (an `enum`, a `required` list), remove it in one action and set it in the next.
    """
    for key, value in update.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merge(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            current.extend(clone(value))
        else:
            target[key] = clone(value)


def _apply_action(document: dict[str, Any], action: dict[str, Any], label: str, *, required: bool = True) -> bool:
    """Apply one action; False when its target matches nothing and `required` is off."""
    target = action.get("target")
    if not isinstance(target, str):
        raise OverlayError(f"{label}: no target")
    remove = action.get("remove", False)
    if not remove and "update" not in action:
        raise OverlayError(f"{label}: needs `update` or `remove: true`")
    nodes = query(document, target)
    if not nodes:
        if not required:
            return False
        raise OverlayError(f"{label}: target {target} matches nothing")
    if remove:
        # Delete array elements from the highest index down so earlier indexes stay valid.
        for parent, key, _ in sorted(nodes, key=lambda n: n[1] if isinstance(n[0], list) else 0, reverse=True):
            if parent is None:
                raise OverlayError(f"{label}: cannot remove the document root")
            del parent[key]
        return True
    update = action["update"]
    for _, _, value in nodes:
        if isinstance(value, dict):
            if not isinstance(update, dict):
                raise OverlayError(f"{label}: target {target} is an object, so `update` must be one")
            merge(value, update)
        elif isinstance(value, list):
            value.append(clone(update))
        else:
            raise OverlayError(f"{label}: target {target} selects a {type(value).__name__}, not an object or array")
    return True


def apply_overlay(document: dict[str, Any], overlay: dict[str, Any],
                  unmatched: list[str] | None = None) -> dict[str, Any]:
    """A copy of `document` with every action of `overlay` applied in order; the inputs are untouched.

    With an `unmatched` list, an action whose target matches nothing is skipped and its target
    appended there instead of failing: an overlay shared by several documents fixes schemas
    that only some of them have, and the caller checks that each action fits one of them.
    """
    version = str(overlay.get("overlay", ""))
    if not re.fullmatch(r"1\.0\.\d+", version):
        raise OverlayError(f"unsupported overlay version {version!r} (want 1.0.x)")
    actions = overlay.get("actions")
    if not isinstance(actions, list) or not actions:
        raise OverlayError("an overlay needs a non-empty `actions` list")
    result = clone(document)
    for number, action in enumerate(actions, start=1):
        description = action.get("description") or action.get("target", "")
        label = f"overlay action {number} ({description})"
        applied = _apply_action(result, action, label, required=unmatched is None)
        if not applied and unmatched is not None:
            unmatched.append(action["target"])
    return result
