"""The safe little language of pipeline conditions (``when:``) and parameter templates.

A condition is parsed by a hand-written tokenizer and recursive-descent parser into a tree of
plain nodes; nothing is ever handed to ``eval`` and no Python object is reachable from it.
It knows:

- literals: numbers, ``'strings'`` / ``"strings"``, ``true``, ``false``, ``null``
- references: ``params.<p>``, ``steps.<id>.outputs.<name>``, ``steps.<id>.status``
- comparisons ``==  !=  <  <=  >  >=`` (one per operand pair: they do not chain),
  ``and``, ``or``, ``not`` and parentheses.

Evaluation is strict: ``and``/``or``/``not`` and the whole condition need true/false,
ordering compares numbers with numbers and strings with strings, and ``true == 1`` is false.
A template is ``{{ <reference> }}`` inside a step's parameter string.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from loopml.errors import InvalidInput

MAX_CONDITION_CHARS = 2000

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
_KEYWORDS = {"and", "or", "not"}
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Reference(NamedTuple):
    """What a name points at: ``("params", None, p)``, ``("outputs", step, name)`` or
    ``("status", step, None)``."""

    kind: str
    step: str | None
    name: str | None

    def __str__(self) -> str:
        if self.kind == "params":
            return f"params.{self.name}"
        if self.kind == "outputs":
            return f"steps.{self.step}.outputs.{self.name}"
        return f"steps.{self.step}.status"


class ExpressionError(InvalidInput):
    """A condition or template that does not parse, or cannot be evaluated on its values."""


def _fail(text: str, position: int, what: str) -> ExpressionError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return ExpressionError(f"{what} at position {position + 1} of {shown!r}", position=position)


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "string", "name", "op", "(", ")", "end"
    value: Any
    position: int


def _tokens(text: str) -> list[_Token]:
    result, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            result.append(_Token(ch, ch, i))
            i += 1
        elif text.startswith(_OPERATORS, i):
            op = next(op for op in _OPERATORS if text.startswith(op, i))
            result.append(_Token("op", op, i))
            i += len(op)
        elif ch in "'\"":
            value, end = _string(text, i)
            result.append(_Token("string", value, i))
            i = end
        elif ch.isdigit() or (ch in "-." and _NUMBER.match(text, i)):
            match = _NUMBER.match(text, i)
            if match is None:
                raise _fail(text, i, "expected a number")
            literal = match.group()
            value = float(literal) if any(c in literal for c in ".eE") else int(literal)
            result.append(_Token("number", value, i))
            i = match.end()
        elif _IDENT.match(text, i):
            match = _IDENT.match(text, i)
            parts, end = [match.group()], match.end()
            while end < len(text) and text[end] == "." and _IDENT.match(text, end + 1):
                match = _IDENT.match(text, end + 1)
                parts.append(match.group())
                end = match.end()
            if end < len(text) and text[end] == ".":
                raise _fail(text, end, "expected a name after '.'")
            result.append(_Token("name", tuple(parts), i))
            i = end
        else:
            hint = " (calls, indexing and attributes other than references are not part of conditions)" \
                if ch in "[]{},:" else ""
            raise _fail(text, i, f"unexpected character {ch!r}{hint}")
    result.append(_Token("end", None, len(text)))
    return result


def _string(text: str, start: int) -> tuple[str, int]:
    quote, i, chars = text[start], start + 1, []
    escapes = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(chars), i + 1
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in escapes:
            chars.append(escapes[text[i + 1]])
            i += 2
            continue
        chars.append(ch)
        i += 1
    raise _fail(text, start, "unterminated string")


def _reference(parts: tuple[str, ...], text: str, position: int) -> Reference:
    dotted = ".".join(parts)
    if parts[0] == "params" and len(parts) == 2 and _OUTPUT_NAME.fullmatch(parts[1]):
        return Reference("params", None, parts[1])
    if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs" and _OUTPUT_NAME.fullmatch(parts[3]):
        return Reference("outputs", parts[1], parts[3])
    if parts[0] == "steps" and len(parts) == 3 and parts[2] == "status":
        return Reference("status", parts[1], None)
    raise _fail(text, position, f"unknown name {dotted!r}: use params.<name>, steps.<step>.outputs.<name> "
                                "or steps.<step>.status")


# The tree: ("lit", value) | ("ref", Reference) | ("cmp", op, left, right) | ("and"|"or", [items]) | ("not", item)
class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.at = text, _tokens(text), 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "name" and token.value == (word,)

    def parse(self) -> tuple:
        if self.peek().kind == "end":
            raise _fail(self.text, 0, "empty condition: expected a comparison such as params.x > 1")
        node = self.disjunction()
        token = self.peek()
        if token.kind != "end":
            raise _fail(self.text, token.position, f"expected 'and', 'or' or the end, found {self.show(token)}")
        return node

    def show(self, token: _Token) -> str:
        if token.kind == "end":
            return "the end"
        if token.kind == "name":
            return repr(".".join(token.value))
        return repr(token.value)

    def disjunction(self) -> tuple:
        items = [self.conjunction()]
        while self.keyword("or"):
            self.take()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else ("or", items)

    def conjunction(self) -> tuple:
        items = [self.negation()]
        while self.keyword("and"):
            self.take()
            items.append(self.negation())
        return items[0] if len(items) == 1 else ("and", items)

    def negation(self) -> tuple:
        if self.keyword("not"):
            self.take()
            return ("not", self.negation())
        return self.comparison()

    def comparison(self) -> tuple:
        left = self.operand()
        token = self.peek()
        if token.kind != "op":
            return left
        self.take()
        right = self.operand()
        if self.peek().kind == "op":
            raise _fail(self.text, self.peek().position, "comparisons do not chain: join them with 'and'")
        return ("cmp", token.value, left, right)

    def operand(self) -> tuple:
        token = self.take()
        if token.kind in ("number", "string"):
            return ("lit", token.value)
        if token.kind == "(":
            node = self.disjunction()
            closing = self.take()
            if closing.kind != ")":
                raise _fail(self.text, closing.position, f"expected ')', found {self.show(closing)}")
            return node
        if token.kind == "name":
            parts = token.value
            if len(parts) == 1 and parts[0] in _LITERALS:
                return ("lit", _LITERALS[parts[0]])
            if len(parts) == 1 and parts[0] in _KEYWORDS:
                raise _fail(self.text, token.position, f"expected a value before {parts[0]!r}")
            if self.peek().kind == "(":
                raise _fail(self.text, self.peek().position, "calls are not part of conditions")
            return ("ref", _reference(parts, self.text, token.position))
        raise _fail(self.text, token.position, f"expected a value (number, string, true/false/null, params.<name> "
                                               f"or steps.<step>...), found {self.show(token)}")


def kind_of(value: Any) -> str:
    """A JSON value's kind as messages name it: null, bool, number, string, list, mapping."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "mapping"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def lookup(reference: Reference, context: Mapping[str, Any]) -> Any:
    """The value of ``reference`` in ``context`` (``{"params": {...}, "steps": {id: {"status": ...,
    "outputs": {...}}}}``); :class:`ExpressionError` saying what is missing when it is not there."""
    if reference.kind == "params":
        params = context.get("params", {})
        if reference.name not in params:
            raise ExpressionError(f"{reference}: the pipeline has no parameter {reference.name!r}")
        return params[reference.name]
    step = context.get("steps", {}).get(reference.step)
    if step is None:
        raise ExpressionError(f"{reference}: step {reference.step!r} has no result yet")
    if reference.kind == "status":
        return step.get("status")
    outputs = step.get("outputs", {})
    if reference.name not in outputs:
        known = ", ".join(sorted(outputs)) or "none"
        raise ExpressionError(f"{reference}: step {reference.step!r} did not set output {reference.name!r} "
                              f"(it set: {known})")
    return outputs[reference.name]


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "!="):
        same = kind_of(left) == kind_of(right) and left == right
        return same if op == "==" else not same
    if kind_of(left) != kind_of(right) or kind_of(left) not in ("number", "string"):
        raise ExpressionError(f"cannot order {kind_of(left)} {_shown(left)} and {kind_of(right)} {_shown(right)} "
                              f"with {op!r}: compare numbers with numbers, strings with strings")
    if kind_of(left) == "number" and (math.isnan(left) or math.isnan(right)):
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


class Condition:
    """A parsed ``when:``; build it with :func:`parse_condition`."""

    def __init__(self, text: str, tree: tuple) -> None:
        self.text = text
        self._tree = tree

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    def references(self) -> set[Reference]:
        """Every reference of the condition, e.g. ``{("outputs", "evaluate", "accuracy")}``."""
        found: set[Reference] = set()

        def walk(node: tuple) -> None:
            if node[0] == "ref":
                found.add(node[1])
            elif node[0] == "cmp":
                walk(node[2])
                walk(node[3])
            elif node[0] in ("and", "or"):
                for item in node[1]:
                    walk(item)
            elif node[0] == "not":
                walk(node[1])

        walk(self._tree)
        return found

    def evaluate(self, context: Mapping[str, Any]) -> tuple[bool, str]:
        """``(result, explanation)``: the explanation names the references and values that
        decided it, e.g. ``steps.evaluate.outputs.accuracy (0.85) >= params.min_accuracy (0.9) is false``.

        Raises :class:`ExpressionError` when a referenced value is missing or of the wrong type.
        """
        value, why = self._eval(self._tree, context)
        if not isinstance(value, bool):
            raise ExpressionError(f"condition {self.text!r} gives {kind_of(value)} {_shown(value)}, not true/false: "
                                  "compare it, e.g. `... == true`")
        return value, why

    def _eval(self, node: tuple, context: Mapping[str, Any]) -> tuple[Any, str]:
        kind = node[0]
        if kind == "lit":
            return node[1], _shown(node[1])
        if kind == "ref":
            value = lookup(node[1], context)
            return value, f"{node[1]} ({_shown(value)})"
        if kind == "cmp":
            (left, left_why), (right, right_why) = self._eval(node[2], context), self._eval(node[3], context)
            result = _compare(node[1], left, right)
            return result, f"{left_why} {node[1]} {right_why} is {'true' if result else 'false'}"
        if kind == "not":
            value, why = self._truth(node[1], context)
            return not value, f"not ({why})"
        decisive = kind == "or"  # or: the first true decides; and: the first false
        reasons = []
        for item in node[1]:
            value, why = self._truth(item, context)
            if value is decisive:
                return value, why
            reasons.append(why)
        return not decisive, f" {kind} ".join(reasons)

    def _truth(self, node: tuple, context: Mapping[str, Any]) -> tuple[bool, str]:
        value, why = self._eval(node, context)
        if not isinstance(value, bool):
            raise ExpressionError(f"{why} is {kind_of(value)}, not true/false, in {self.text!r}: compare it")
        return value, why


def parse_condition(text: str) -> Condition:
    """``text`` parsed; :class:`ExpressionError` naming the position and what was expected."""
    if not isinstance(text, str):
        raise ExpressionError(f"a condition is a string, got {kind_of(text)}")
    if len(text) > MAX_CONDITION_CHARS:
        raise ExpressionError(f"the condition has {len(text)} characters, more than {MAX_CONDITION_CHARS}")
    try:
        return Condition(text, _Parser(text).parse())
    except RecursionError:
        raise ExpressionError("the condition nests too deeply") from None


def parse_reference(text: str) -> Reference:
    """A single reference such as ``steps.train.outputs.run_id``."""
    tokens = _tokens(text)
    if len(tokens) != 2 or tokens[0].kind != "name":
        raise _fail(text, tokens[0].position if tokens[0].kind != "name" else tokens[1].position,
                    "expected one name such as params.<name> or steps.<step>.outputs.<name>")
    return _reference(tokens[0].value, text, tokens[0].position)


def _templates(text: str) -> list[tuple[re.Match, Reference]]:
    found = []
    for match in _TEMPLATE.finditer(text):
        try:
            found.append((match, parse_reference(match.group(1).strip())))
        except ExpressionError as exc:
            raise ExpressionError(f"template {match.group()!r}: {exc.message}") from None
    rest = _TEMPLATE.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise ExpressionError(f"unbalanced '{{{{' or '}}}}' in {text!r}: a template is {{{{ steps.<step>.outputs.<name> }}}} "
                              "or {{ params.<name> }}")
    return found


def template_references(value: Any) -> set[Reference]:
    """The references of every ``{{ ... }}`` in ``value`` (a JSON value: strings inside lists and
    dicts count); :class:`ExpressionError` for a malformed template."""
    if isinstance(value, str):
        return {reference for _, reference in _templates(value)}
    if isinstance(value, Mapping):
        return set().union(*(template_references(item) for item in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*(template_references(item) for item in value))
    return set()


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """``value`` with its templates replaced by their values in ``context``.

    A string that is one template and nothing else becomes the value itself, of its own JSON
    type (``"{{ steps.train.outputs.accuracy }}"`` → ``0.93``); a template inside other text is
    interpolated (strings as they are, other values as JSON: ``true``, ``[1, 2]``).
    """
    if isinstance(value, Mapping):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if not isinstance(value, str):
        return value
    found = _templates(value)
    if len(found) == 1 and found[0][0].span() == (0, len(value)):
        return lookup(found[0][1], context)
    pieces, at = [], 0
    for match, reference in found:
        pieces.append(value[at:match.start()])
        resolved = lookup(reference, context)
        pieces.append(resolved if isinstance(resolved, str) else json.dumps(resolved))
        at = match.end()
    pieces.append(value[at:])
    return "".join(pieces)
