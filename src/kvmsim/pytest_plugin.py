"""The pytest plugin (entry point ``pytest11``): the ``kvmsim`` fixture.

pytest imports this module at every start-up, in every project where kvmsim is installed, so
it imports nothing of kvmsim's own: the fixture loads ``kvmsim.testing`` when a test asks for
it. See ``kvmsim.testing`` and docs/testing-with-pytest.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import Kvmsim


@pytest.fixture
def kvmsim(request: pytest.FixtureRequest) -> Kvmsim:
    """Check kvmsim models and KVM variants: ``kvmsim.check("patch.py:fix",
    scenario="migrate").holds()``; relative paths are relative to the test file's folder."""
    from .testing import Kvmsim

    return Kvmsim(request.path.parent)
