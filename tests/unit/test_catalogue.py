"""The listing contract, the live catalogue's in-place updates and catch-up, and the DLQ replay's memory."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from rental.servers.topics import project_topics
from rental.settings import Settings
from streaming.catalogue.listing import Listing, ListingError, decode_listing, listings
from streaming.consumer.dlq_replay import MAX_METADATA_CHARS, UNKNOWN_ITEM_REASON, _parse_ranges, _ranges, group_for
from streaming.events import CREATED
from streaming.features.pipeline import APPLIED, UNKNOWN_ITEM, Catalogue, FeaturePipeline
from streaming.history.tables import ITEMS, validate
from streaming.simulator.history import simulate
from streaming.simulator.world import SimulationConfig

GOOD = {"item_id": "i9", "brand": "Acme", "brand_tier": "premium", "category": "dress", "colour": None, "size": "10",
        "retail_price": 250.0, "condition": "good", "listing_date": "2026-05-01", "units": 2}  # fmt: skip


def _encoded(**changes) -> bytes:
    """A listing's JSON as a producer might write it, unchecked."""
    return json.dumps(GOOD | changes).encode()


def test_a_listing_has_the_items_tables_columns_and_their_requiredness():
    fields = Listing.model_fields
    assert set(fields) - {"schema_version"} == {c.name for c in ITEMS.columns}
    for column in ITEMS.columns:
        assert fields[column.name].is_required() == (column.required and not column.nullable), column.name


def test_the_simulators_table_lists_and_comes_back_the_same():
    history = simulate(SimulationConfig(seed=3, items=40, bookings=200, end=date(2026, 6, 1)))
    rows = listings(history.items)
    assert [r.item_id for r in rows] == history.items["item_id"].tolist()
    back = [decode_listing(r.item_id.encode(), r.encode()) for r in rows]
    assert back == rows
    frame = pd.DataFrame([r.model_dump(exclude={"schema_version"}) for r in back])
    checked, problems = validate(frame, ITEMS, "listings")
    assert not problems.found
    assert Catalogue.from_items(checked) == Catalogue.from_items(history.items)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"i9", _encoded(brand=" "), "brand: Value error, must not be blank"),
        (b"i9", _encoded(retail_price=0), "retail_price: Input should be greater than 0"),
        (b"i9", _encoded(category=None), "category"),
        (b"i8", _encoded(), "key: 'i8' is not the listing's item_id 'i9'"),
        (None, _encoded(), "key: None"),
        (b"i9", _encoded()[:-1] + b', "price": 3}', "price: Extra inputs are not permitted"),
        (b"i9", b"[" * 100_000, "listing:"),
        (b"i9", b"\xff\xfe", "listing:"),
        (b"i9", b"null", "listing:"),
    ],
)
def test_a_bad_listing_is_a_listing_error_with_its_reason(key, value, reason):
    with pytest.raises(ListingError) as raised:
        decode_listing(key, value)
    assert reason in str(raised.value)
    assert len(str(raised.value)) <= 1_000


def _booked(item_id: str):
    return [(CREATED, f"e-{item_id}", item_id, "c1", 1_000_000, 5_000, 3)]


def test_an_item_put_in_place_is_known_to_a_pipeline_already_running():
    catalogue = Catalogue({"i1": "dress"}, {"i1": 100}, {"i1": 1})
    pipeline = FeaturePipeline(catalogue)
    assert pipeline.process_many(_booked("i9")).tolist() == [UNKNOWN_ITEM]
    catalogue.put("i9", "gown", 249.5, 3)
    assert (catalogue.category["i9"], catalogue.retail["i9"], catalogue.units["i9"]) == ("gown", 250, 3)
    assert pipeline.process_many(_booked("i9")).tolist() == [APPLIED]
    assert pipeline.engines["item_popularity"].values("i9")["utilisation_30d"] == pytest.approx(3 / (3 * 30))


def test_an_unknown_item_catches_the_catalogue_up_once_before_it_is_declared_unknown():
    catalogue = Catalogue({"i1": "dress"}, {"i1": 100}, {"i1": 1})
    calls = []

    def catch_up():  # the follower: what was listed before the booking arrives now
        calls.append(1)
        catalogue.put("i9", "gown", 250.0, 1)

    catalogue.on_unknown(catch_up)
    pipeline = FeaturePipeline(catalogue)
    assert pipeline.process_many(_booked("i1")).tolist() == [APPLIED] and not calls  # known items never wait
    assert pipeline.process_many(_booked("i9") + _booked("i7")).tolist() == [APPLIED, UNKNOWN_ITEM]
    assert len(calls) == 1
    catalogue.on_unknown(None)
    assert catalogue.known(np.array(["i7"], object)).tolist() == [False] and len(calls) == 1


def test_a_listing_is_valid_from_its_listing_date_at_midnight_utc():
    listing = Listing.model_validate(GOOD)
    assert listing.listed_at == datetime(2026, 5, 1, tzinfo=UTC)
    assert listing.attributes()["item_category"] == "dress" and listing.attributes()["units"] == 2


def test_a_listing_needs_only_id_brand_and_category_in_the_platforms_own_words():
    minimal = {"item_id": "i9", "brand": "Rosé & Co, London 🌹", "category": "Cotton-Jersey, Loose, Summer"}
    listing = decode_listing(b"i9", json.dumps(minimal | {"condition": "worn twice", "colour": " "}).encode())
    assert listing.condition == "worn twice" and listing.colour is None and listing.units == 1
    assert listing.listed_at is None and listing.valid_from == datetime(1970, 1, 2, tzinfo=UTC)
    assert listing.attributes()["retail_price"] is None
    catalogue = Catalogue({}, {}, {})
    catalogue.put(listing.item_id, listing.category, listing.retail_price, listing.units)
    items = pd.DataFrame([minimal])
    assert Catalogue.from_items(items) == catalogue  # an unknown retail price is kept as 0
    checked, problems = validate(items, ITEMS, "items")
    assert not problems.found and Catalogue.from_items(checked) == catalogue


def test_replayed_offsets_are_remembered_as_ranges_and_bounded():
    offsets = [3, 4, 5, 9, 11, 12]
    assert _ranges(offsets) == "3-5,9,11-12"
    assert _parse_ranges(_ranges(offsets)) == set(offsets)
    many = list(range(0, 20_000, 2))
    text = _ranges(many)
    assert len(text) <= MAX_METADATA_CHARS and _parse_ranges(text) <= set(many)  # later ones may be sent twice
    assert _parse_ranges("written by something else") == set()
    assert _parse_ranges(None) == set()


def test_each_reason_filter_replays_from_its_own_group():
    settings = Settings()
    assert group_for(settings, UNKNOWN_ITEM_REASON) == f"{settings.consumer_group_prefix}-dlq-replay"
    assert group_for(settings, "event_time") != group_for(settings, UNKNOWN_ITEM_REASON)


def test_the_items_topic_is_one_of_the_project_topics_and_compacted():
    settings = Settings()
    specs, compacted = project_topics(settings)
    assert specs[settings.topic_items] == (settings.items_partitions, -1)
    assert compacted == {settings.topic_items}
    assert {name: spec for name, spec in specs.items() if name != settings.topic_items} == settings.topic_specs()
