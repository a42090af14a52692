"""The live catalogue of one stage process: its follower, and for the items stage the attributes writer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd

from rental.settings import Settings
from streaming.catalogue.follower import Follower, read_to_end
from streaming.features.pipeline import Catalogue

if TYPE_CHECKING:
    from feast import FeatureStore
    from kafka import KafkaProducer

    from streaming.catalogue.writer import AttributesWriter

log = logging.getLogger(__name__)


class LiveCatalogue:
    """Started in the stage's own process (threads do not survive the supervisor's fork)."""

    def __init__(self, follower: Follower, writer: AttributesWriter | None):
        self.follower, self.writer = follower, writer

    @classmethod
    def start(cls, settings: Settings, catalogue: Catalogue, store: FeatureStore, producer: KafkaProducer,
              writes_attributes: bool) -> LiveCatalogue:  # fmt: skip
        writer = None
        if writes_attributes:
            from streaming.catalogue.writer import AttributesWriter

            writer = AttributesWriter(settings, store, producer).start()
        return cls(Follower(settings, catalogue).start(), writer)

    def close(self) -> None:
        """Stop both threads; never raises, so the stage's own shutdown goes on."""
        for part in (self.follower, self.writer):
            try:
                if part is not None:
                    part.close()
            except Exception as exc:
                log.warning("catalogue: %s did not close cleanly (%r)", type(part).__name__, exc)


def seed_items(settings: Settings) -> pd.DataFrame | None:
    """The items table the catalogue starts from, validated; None when there is none."""
    from streaming.history.tables import ITEMS, history_paths, read_table, validate

    path = history_paths(settings.history_dir)[0]
    if not path.exists():
        return None
    items, problems = validate(read_table(path), ITEMS, path.name)
    problems.raise_if_any()
    return items


def current_catalogue(settings: Settings) -> Catalogue:
    """The catalogue as the stages know it now: the items table (when there is one) with every
    listing on the items topic so far applied on top."""
    items = seed_items(settings)
    return read_to_end(settings, Catalogue.from_items(items) if items is not None else Catalogue({}, {}, {}))


def export(settings: Settings) -> tuple[pd.DataFrame, int]:
    """The items table as the live catalogue has it: the seed table with each item's latest
    listing on the topic in place of its row, and the items only listed live appended. A
    backfill or a training run reads that table, so live listings need it to be written back."""
    from streaming.history.tables import ITEMS, history_paths, validate

    latest: dict[str, dict] = {}
    path = history_paths(settings.history_dir)[0]
    seed = seed_items(settings)
    if seed is None:
        seed = pd.DataFrame(columns=[c.name for c in ITEMS.columns])
    read_to_end(settings, Catalogue({}, {}, {}),
                on_listing=lambda listing: latest.__setitem__(listing.item_id, listing.model_dump(exclude={"schema_version"})))  # fmt: skip
    if not latest:
        return seed, 0
    listed = pd.DataFrame(list(latest.values())).dropna(axis=1, how="all")  # an optional column nobody filled
    kept = seed[~seed["item_id"].isin(listed["item_id"])]
    merged = pd.concat([kept, listed], ignore_index=True) if len(kept) else listed
    items, problems = validate(merged, ITEMS, f"{path.name} and {settings.topic_items}")
    problems.raise_if_any()
    return items, len(latest)
