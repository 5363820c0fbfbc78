"""The harness and the payload agree on names that each side lists without importing the other."""

from __future__ import annotations

from collectives.api import BACKENDS
from study.parameters import ALLREDUCE_CHOICES


def test_experiment_allreduce_choices_are_the_payload_backends():
    assert sorted(ALLREDUCE_CHOICES) == sorted(BACKENDS)
