"""Orchestration: Prefect flows that keep the offline store, Redis and the champion up to date,
on schedules and on monitoring's retrain requests (see flows/README.md).

Prefect reads its settings once, when first imported: importing this package first sets them
(offline, analytics off, its home under the data dir) unless the environment already does.
"""

from flows.environment import configure
from rental.settings import get_settings

configure(get_settings(), use_local_server=False, make_home=False)
