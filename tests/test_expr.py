"""The sandboxed expression evaluator for derived values and exclusions."""

from __future__ import annotations

import pytest

from study.expr import ExprError, compile_expr


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("nodes * gpus_per_node", {"nodes": 4, "gpus_per_node": 4}, 16),
        ("world_size // pp", {"world_size": 16, "pp": 2}, 8),
        ("2 ** log", {"log": 10}, 1024),
        ("a % 3 + -b", {"a": 10, "b": 2}, -1),
        ("a / 4", {"a": 10}, 2.5),
        ("min(a, 8) + max(b, 1)", {"a": 16, "b": 0}, 9),
        ("x if a > 2 else y", {"a": 3, "x": "big", "y": "small"}, "big"),
        ("x if a > 2 else y", {"a": 1, "x": "big", "y": "small"}, "small"),
        ("a > 1 and b == 'nvrar' or c", {"a": 2, "b": "nvrar", "c": False}, True),
        ("not flag", {"flag": True}, False),
        ("1 < a <= 4", {"a": 4}, True),
        ("alg in ['nccl', 'gloo']", {"alg": "gloo"}, True),
        ("flag == true", {"flag": True}, True),
        ("ceil(a / 3)", {"a": 10}, 4),
    ],
)
def test_evaluates(source, values, expected):
    assert compile_expr(source).evaluate(values) == expected


def test_names_are_the_values_read():
    assert compile_expr("max(nodes, 2) * gpus_per_node if tp else 1").names == {
        "nodes",
        "gpus_per_node",
        "tp",
    }


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "a.__class__",
        "[x for x in y]",
        "lambda: 1",
        "f'{a}'",
        "a[0]",
        "exec('1')",
        "{1: 2}",
        "(a := 1)",
    ],
)
def test_refuses_anything_outside_the_language(source):
    with pytest.raises(ExprError):
        compile_expr(source)


def test_refuses_huge_results():
    with pytest.raises(ExprError, match="exponent"):
        compile_expr("2 ** (10 ** 6)").evaluate({})
    with pytest.raises(ExprError, match="repeating"):
        compile_expr("'x' * 100000000").evaluate({})


def test_failures_name_the_expression():
    with pytest.raises(ExprError, match="a // b"):
        compile_expr("a // b").evaluate({"a": 1, "b": 0})
    with pytest.raises(ExprError, match="unknown name `c`"):
        compile_expr("c + 1").evaluate({"a": 1})
    with pytest.raises(ExprError, match="cannot parse"):
        compile_expr("a +")
