"""Mutated experiment files (bench/mutations.py), drawn by hypothesis on a bounded budget: every one
is either still valid or refused with an error at FILE:LINE, never a traceback, a hang, or an error
without a position. bench/bench_fuzz.py runs 10,000 cases and prints the counts."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.mutations import MUTATIONS, SEEDS, Case, mutate, run_case

CASES = st.builds(
    Case,
    seed=st.integers(0, len(SEEDS) - 1),
    mutation=st.sampled_from(MUTATIONS),
    where=st.integers(0, 1 << 30),
    what=st.integers(0, 1 << 30),
)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(CASES)
def test_a_mutated_experiment_file_is_valid_or_refused_at_its_line(case: Case) -> None:
    _, outcome, message = run_case(case)
    assert outcome in ("ok", "located"), (case, outcome, message)


def test_the_seeds_are_valid_and_each_mutation_changes_them() -> None:
    """The harness itself: unmutated seeds pass (so `located` means the mutation broke something),
    and every kind of mutation changes some seed."""
    for index, seed in enumerate(SEEDS):
        text = seed.read_text(encoding="utf-8")
        assert run_case(Case(index, "none", 0, 0))[1] == "ok", seed
        assert mutate(text, Case(index, "none", 0, 0)) == text.encode()
    for mutation in MUTATIONS:
        changed = [
            mutate(s.read_text(encoding="utf-8"), Case(i, mutation, 12345, 678)) != s.read_bytes()
            for i, s in enumerate(SEEDS)
        ]
        assert any(changed), mutation
