"""Every scenario of the fault campaign, in its small form (tests/faults/campaign.py; the full
one is `scripts/fault-campaign`)."""

from __future__ import annotations

import pytest

from tests.faults.campaign import SCENARIOS, run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario_keeps_the_pool_consistent(scenario: str) -> None:
    found = run([scenario], "small", seed=11, budget=300)[scenario]
    if found is None:
        pytest.skip(f"{scenario} cannot run on this machine (its reason is printed)")
    assert found == []
