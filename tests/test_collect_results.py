"""study.results additions: Hatchet literal timer trees built from nested timings and flattened to rows,
and secret filtering by name and by value."""

from __future__ import annotations

import pytest

from study import results as R


def test_timers_from_nested_compute_exclusive_time_and_validate() -> None:
    roots = R.timers_from_nested(
        {
            "decode": {
                "time_ms": 10.0,
                "calls": 4,
                "children": {
                    "allreduce": {"time_ms": 3.0, "type": "comm", "calls": 8},
                    "matmul": {"time_ms": 5.0, "type": "compute"},
                },
            },
            "prefill": 2.5,
        }
    )
    decode, prefill = roots
    assert decode["metrics"] == {"time (inc)": 10.0, "time": 2.0, "calls": 4}
    assert [c["frame"] for c in decode["children"]] == [
        {"name": "allreduce", "type": "comm"},
        {"name": "matmul", "type": "compute"},
    ]
    assert prefill["metrics"]["time"] == 2.5 and prefill["children"] == []
    result = R.new_result(kind="inference", params={}, topology={})
    result["timers"] = roots
    R.validate_result(result)


def test_a_node_without_time_gets_its_childrens_sum() -> None:
    (root,) = R.timers_from_nested({"step": {"children": {"a": 1.0, "b": 2.0}}})
    assert root["metrics"]["time (inc)"] == 3.0 and root["metrics"]["time"] == 0.0


def test_flatten_timers_gives_paths_depths_and_metrics() -> None:
    roots = R.timers_from_nested(
        {"a": {"time_ms": 4.0, "children": {"b": {"time_ms": 3.0, "children": {"c": 1.0}}}}}
    )
    rows = R.flatten_timers(roots)
    assert [(r["path"], r["depth"], r["time_inc_ms"], r["time_ms"]) for r in rows] == [
        ("a", 0, 4.0, 1.0),
        ("a/b", 1, 3.0, 2.0),
        ("a/b/c", 2, 1.0, 1.0),
    ]


def test_bad_timer_type_is_refused() -> None:
    with pytest.raises(R.ResultError, match="type"):
        R.timer_node("x", 1.0, type="gpu")


@pytest.mark.parametrize(
    "value",
    [
        "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
        "xoxb-1234567890-abcdefghij",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "AKIAIOSFODNN7EXAMPLE",
        "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        "Zx81kQm2Lp0Vt7Yw4Rb9Nc3Hd6Fg5Js1Ae8Ku2",
    ],
)
def test_token_shaped_values_are_secrets(value: str) -> None:
    assert R.looks_like_secret(value)
    assert R.filtered_env({"NCCL_SOMETHING": value, "NCCL_DEBUG": "INFO"}) == {"NCCL_DEBUG": "INFO"}


@pytest.mark.parametrize(
    "value",
    [
        "INFO",
        "^lo,docker0",
        "GPU-8f3c2e1a-5b7d-4c9e-a1f2-3b4c5d6e7f80",
        "/opt/nvidia/hpc_sdk/Linux_x86_64/24.5/cuda",
        "cddd38c42d272bf2e472de9f7ccb1f66ddf525b6",
        "mlx5_0:1,mlx5_1:1",
    ],
)
def test_ordinary_values_are_kept(value: str) -> None:
    assert not R.looks_like_secret(value)


def test_secret_names_are_dropped_but_pkey_is_kept() -> None:
    env = {
        "NCCL_IB_PKEY": "0x8001",
        "NCCL_API_KEY": "x",
        "STUDY_KEY": "y",
        "STUDY_AUTH_HEADER": "z",
        "STUDY_PASSWORD": "p",
        "NCCL_DEBUG": "WARN",
    }
    assert R.filtered_env(env) == {"NCCL_DEBUG": "WARN", "NCCL_IB_PKEY": "0x8001"}


def test_sample_values_follow_the_sample_schema() -> None:
    result = R.new_result(kind="collective", params={}, topology={})
    result["samples"] = [
        {"algorithm": "nccl", "size_bytes": 1024, "latency_us": 3.5, "graphs": False, "wrong": None}
    ]
    R.validate_result(result)
    for key, value, message in (
        ("size_bytes", 10.5, "expected a whole number"),
        ("graphs", "yes", "expected a true or false"),
        ("algorithm", 3, "expected a string"),
        ("custom_latency_us", "slow", "expected a number"),  # any key that names a unit is a number
        ("statistic", 3, "expected a string"),
        ("statistic", "median", "expected one of rank0, mean, min, max, got 'median'"),
        ("latency_us_mean", "fast", "expected a number"),
    ):
        bad = {**result, "samples": [{**result["samples"][0], key: value}]}
        with pytest.raises(R.ResultError, match=rf"samples\[0\]\.{key}: {message}"):
            R.validate_result(bad)


def test_a_timer_tree_too_deep_or_with_bad_children_is_refused() -> None:
    result = R.new_result(kind="inference", params={}, topology={})
    node = {"frame": {"name": "leaf"}, "metrics": {"time (inc)": 1.0, "time": 1.0}}
    for _ in range(R.MAX_TIMER_DEPTH + 2):
        node = {"frame": {"name": "n"}, "metrics": {"time (inc)": 1.0, "time": 0.0}, "children": [node]}
    with pytest.raises(R.ResultError, match="deeper than"):
        R.validate_result({**result, "timers": [node]})
    flat = {"frame": {"name": "n"}, "metrics": {"time (inc)": 1.0, "time": 1.0}, "children": "none"}
    with pytest.raises(R.ResultError, match="children: expected a list"):
        R.validate_result({**result, "timers": [flat]})


def test_a_sample_says_its_statistic_and_older_ones_read_as_the_maximum(tmp_path) -> None:
    result = R.new_result(kind="collective", params={}, topology={})
    older = {"algorithm": "nccl", "size_bytes": 1024, "latency_us": 9.0, "latency_us_max": 9.0}
    newer = {**older, "latency_us": 7.0, "latency_us_mean": 7.0, "statistic": "mean"}
    result["samples"] = [older, newer, {"algorithm": "nccl"}]
    path = R.write_result(result, tmp_path / "results.json")
    assert "statistic" not in path.read_text().split('"samples"')[1].split("}")[0]
    samples = R.read_result(path)["samples"]
    assert [s.get("statistic") for s in samples] == [R.LEGACY_STATISTIC, "mean", None]
    assert R.LEGACY_STATISTIC == "max" and R.STATISTICS.index("max") == 3  # nccl-tests' -a 3
