"""Shared pytest configuration: pytester (the pytest plugin's tests run a sub-pytest) and the
Hypothesis profiles."""

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

# Property-based tests: a few seconds each. "ci" (the default under CI=true) is derandomized
# so a CI run is repeatable; "dev" explores new examples on every run; "thorough" is for a
# long local run: HYPOTHESIS_PROFILE=thorough pytest -n0 tests/engine/test_agreement.py
settings.register_profile(
    "ci",
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
