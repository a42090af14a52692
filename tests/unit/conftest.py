from datetime import date

import pytest

from streaming.simulator.history import simulate
from streaming.simulator.world import SimulationConfig

SMALL = SimulationConfig(seed=7, items=400, bookings=20_000, end=date(2026, 11, 1))


@pytest.fixture(scope="session")
def small_history():
    return simulate(SMALL)
