"""A small, sandboxed expression language for derived values and exclusions (no Python `eval`).

Expressions are parsed with `ast` and walked by an evaluator that knows only numbers, strings,
booleans, names of other values, `+ - * / // % **`, comparisons, `and`/`or`/`not`, `x if c else y`,
`in` over a literal list, and the functions below. Anything else is refused when the expression is
parsed, so a typo fails at `study validate`, not on a compute node.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ExprError", "Expression", "compile_expr"]

_MAX_POWER_EXPONENT = 256
_MAX_REPEAT = 4096
# Work limits on values an expression makes: integers of at most this many bits (2**4096 is far
# beyond any size or count, and it prints in about 1,200 digits), strings and lists of at most this
# many items. Each is checked before the operation that would exceed it runs.
_MAX_INT_BITS = 4096
_MAX_LENGTH = 65_536

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,
    "float": float,
    "round": round,
    "ceil": math.ceil,
    "floor": math.floor,
    "log2": math.log2,
    "sqrt": math.sqrt,
}
_CONSTANTS = {"true": True, "false": False, "null": None}


class ExprError(ValueError):
    """An expression that cannot be parsed, names an unknown value, or fails to evaluate."""


class Expression:
    """A parsed expression: `names` are the values it reads; call `evaluate(values)`."""

    def __init__(self, source: str, tree: ast.Expression, names: frozenset[str]):
        self.source, self._tree, self.names = source, tree, names

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        try:
            return _eval(self._tree.body, values)
        except ExprError:
            raise
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise ExprError(f"`{self.source}` failed: {exc}") from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _short(source: str) -> str:
    """An expression as error messages quote it: at most 80 characters."""
    return source if len(source) <= 80 else source[:77] + "..."


def compile_expr(source: str) -> Expression:
    """Parse and check an expression once; raise ExprError naming what is not allowed."""
    if not isinstance(source, str) or not source.strip():
        raise ExprError("expected a non-empty expression")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"cannot parse `{_short(source)}`: {exc.msg[:200]}") from None
    names: set[str] = set()
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        _check_node(node, source, names, called)
    return Expression(source.strip(), tree, frozenset(names - set(_CONSTANTS)))


_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Call,
    ast.List,
    ast.Tuple,
    ast.And,
    ast.Or,
    ast.Not,
    ast.USub,
    ast.UAdd,
    *_BINOPS,
    *_CMPOPS,
)


def _check_node(node: ast.AST, source: str, names: set[str], called: set[int]) -> None:
    if not isinstance(node, _ALLOWED_NODES):
        raise ExprError(
            f"`{source}`: {type(node).__name__} is not allowed in an expression "
            f"(allowed: arithmetic, comparisons, and/or/not, `a if c else b`, "
            f"{', '.join(sorted(_FUNCTIONS))})"
        )
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExprError(
                f"`{source}`: unknown function `{called}` (known: {', '.join(sorted(_FUNCTIONS))})"
            )
    elif isinstance(node, ast.Name) and id(node) not in called:
        names.add(node.id)
    elif isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str | bool | None):
        raise ExprError(f"`{source}`: constant {node.value!r} is not allowed")
    elif isinstance(node, ast.Constant) and _constant_too_big(node.value):
        raise ExprError(f"`{_short(source)}`: {_constant_too_big(node.value)}")


def _constant_too_big(value: Any) -> str | None:
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        return f"an integer of more than {_MAX_INT_BITS} bits is not allowed"
    if isinstance(value, str) and len(value) > _MAX_LENGTH:
        return f"a string of more than {_MAX_LENGTH} characters is not allowed"
    return None


def _repeats_too_much(left: Any, right: Any) -> bool:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list) and isinstance(count, int) and not isinstance(count, bool):
            if count > _MAX_REPEAT or len(seq) * max(count, 0) > _MAX_LENGTH:
                return True
    return False


def _too_big(op: ast.operator, left: Any, right: Any) -> str | None:
    """Why `left op right` would make a value past the work limits, before computing it."""
    ints = isinstance(left, int) and isinstance(right, int)
    if isinstance(op, ast.Pow) and ints and right > 0 and abs(left) > 1:
        if (abs(left).bit_length() - 1) * right > _MAX_INT_BITS:
            return f"{left} ** {right} has more than {_MAX_INT_BITS} bits"
    if isinstance(op, ast.Mult) and ints:
        if abs(left).bit_length() + abs(right).bit_length() > _MAX_INT_BITS + 1:
            return f"the product has more than {_MAX_INT_BITS} bits"
    if isinstance(op, ast.Mult) and _repeats_too_much(left, right):
        return f"repeating a string or list past {_MAX_REPEAT} times or {_MAX_LENGTH} items is not allowed"
    if isinstance(op, ast.Add) and isinstance(left, str | list) and isinstance(right, str | list):
        if len(left) + len(right) > _MAX_LENGTH:
            return f"joining makes more than {_MAX_LENGTH} items"
    return None


def _eval(node: ast.AST, values: Mapping[str, Any]) -> Any:
    evaluate = _EVALUATORS.get(type(node))
    if evaluate is None:
        raise ExprError(f"{type(node).__name__} is not allowed in an expression")
    return evaluate(node, values)


def _name(node: ast.Name, values: Mapping[str, Any]) -> Any:
    if node.id in values:
        return values[node.id]
    if node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    raise ExprError(f"unknown name `{node.id}` (known: {', '.join(sorted(values))})")


def _binop(node: ast.BinOp, values: Mapping[str, Any]) -> Any:
    left, right = _eval(node.left, values), _eval(node.right, values)
    if isinstance(node.op, ast.Pow) and isinstance(right, int | float) and abs(right) > _MAX_POWER_EXPONENT:
        raise ExprError(f"exponent {right} is larger than {_MAX_POWER_EXPONENT}")
    problem = _too_big(node.op, left, right)
    if problem:
        raise ExprError(problem)
    return _BINOPS[type(node.op)](left, right)


def _unaryop(node: ast.UnaryOp, values: Mapping[str, Any]) -> Any:
    operand = _eval(node.operand, values)
    if isinstance(node.op, ast.Not):
        return not operand
    return -operand if isinstance(node.op, ast.USub) else +operand


def _boolop(node: ast.BoolOp, values: Mapping[str, Any]) -> Any:
    """Python's `and` / `or`: the first value that decides, else the last; the rest is not evaluated."""
    decides = (lambda v: not v) if isinstance(node.op, ast.And) else bool
    result: Any = isinstance(node.op, ast.And)
    for value in node.values:
        result = _eval(value, values)
        if decides(result):
            return result
    return result


def _compare(node: ast.Compare, values: Mapping[str, Any]) -> bool:
    left = _eval(node.left, values)
    for op, comparator in zip(node.ops, node.comparators, strict=True):
        right = _eval(comparator, values)
        if not _CMPOPS[type(op)](left, right):
            return False
        left = right
    return True


def _call(node: ast.Call, values: Mapping[str, Any]) -> Any:
    assert isinstance(node.func, ast.Name)  # compile_expr allows calls of known functions by name only
    return _FUNCTIONS[node.func.id](*[_eval(arg, values) for arg in node.args])


def _elements(node: ast.List | ast.Tuple, values: Mapping[str, Any]) -> list[Any]:
    return [_eval(element, values) for element in node.elts]


_EVALUATORS: dict[type, Callable[[Any, Mapping[str, Any]], Any]] = {
    ast.Constant: lambda node, values: node.value,
    ast.Name: _name,
    ast.BinOp: _binop,
    ast.UnaryOp: _unaryop,
    ast.BoolOp: _boolop,
    ast.Compare: _compare,
    ast.IfExp: lambda node, values: (
        _eval(node.body, values) if _eval(node.test, values) else _eval(node.orelse, values)
    ),
    ast.List: _elements,
    ast.Tuple: _elements,
    ast.Call: _call,
}
