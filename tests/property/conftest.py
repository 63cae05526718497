"""Hypothesis profiles for the property tests.

``ci`` (the default): derandomized, so CI runs the same examples every time and a failure reproduces
locally with the same command; sized so this folder stays near a minute on a loaded 2-core box.
``deep``: many more examples and a fresh random seed per run, for hunting new bugs locally:

    HYPOTHESIS_PROFILE=deep pytest -q tests/property

``triage``: the ci examples without shrinking, to see a failure quickly while fixing it.

Tests size their example counts with ``_fuzz.examples(n)`` (n in the ci profile, DEEP_FACTOR * n deep).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

_COMMON = {
    "deadline": None,  # an import touches disk and Arrow: wall time varies with the box's load
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "database": None,  # nothing written into the tree; a failure prints its example (and a reproduce blob)
    "print_blob": True,
}
settings.register_profile("ci", derandomize=True, max_examples=20, **_COMMON)
settings.register_profile("deep", derandomize=False, max_examples=20 * 25, **_COMMON)
# ci's examples without shrinking: a failure shows its first (unshrunk) example in seconds, not minutes
settings.register_profile(
    "triage", derandomize=True, max_examples=20, phases=[Phase.explicit, Phase.generate], **_COMMON
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
