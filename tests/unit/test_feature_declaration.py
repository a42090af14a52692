"""One declaration of each view (streaming/feature_store/views.py): the Feast repo, the Parquet
schemas and the rows the stream computes all follow it, and a spec that strays fails at once."""

import sys
from datetime import timedelta

import pyarrow as pa
import pytest
from feast import PushSource, ValueType
from feast.repo_operations import parse_repo
from feast.types import Float64, Int64, String, UnixTimestamp

from rental.settings import get_settings
from streaming.backfill import static_rows
from streaming.events import CANCELLED, CREATED
from streaming.feature_store.offline import SCHEMAS, to_table, view_glob
from streaming.feature_store.store import FEATURE_REPO
from streaming.feature_store.views import (
    ENTITIES,
    EVENT_TIMESTAMP,
    FEATURE_SERVICE,
    FLOAT,
    INT,
    ITEM,
    SERVICE_VIEWS,
    STRING,
    TIMESTAMP,
    VIEWS,
    View,
)
from streaming.features.definitions import declared_spec
from streaming.features.pipeline import VIEWS as COMPUTED_VIEWS
from streaming.features.pipeline import Catalogue, FeaturePipeline
from streaming.features.windows import DAY_US, WindowEngine

FEAST = {INT: Int64, FLOAT: Float64, STRING: String, TIMESTAMP: UnixTimestamp}
ARROW = {INT: pa.int64(), FLOAT: pa.float64(), STRING: pa.string(), TIMESTAMP: pa.timestamp("us", tz="UTC")}
REPO_MODULES = [p.stem for p in FEATURE_REPO.glob("*.py")]


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """The repo's objects as `feast apply` collects them, with settings at a scratch data dir."""
    monkeypatch.setenv("RENTAL_DATA_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(FEATURE_REPO))
    monkeypatch.chdir(FEATURE_REPO)
    for module in REPO_MODULES:
        monkeypatch.delitem(sys.modules, module, raising=False)
    get_settings.cache_clear()
    yield parse_repo(FEATURE_REPO)
    for module in REPO_MODULES:
        sys.modules.pop(module, None)
    get_settings.cache_clear()


def test_the_feast_views_are_the_declared_views(repo):
    settings = get_settings()
    views = {fv.name: fv for fv in repo.feature_views}
    assert list(views) and set(views) == set(VIEWS)
    for name, declared in VIEWS.items():
        fv = views[name]
        assert [(f.name, f.dtype) for f in fv.features] == [(f, FEAST[t]) for f, t in declared.features.items()]
        assert fv.entities == [declared.entity.name]
        assert fv.ttl == declared.ttl and fv.online == declared.online
        assert fv.batch_source.path == view_glob(settings, name)
        assert fv.batch_source.timestamp_field == EVENT_TIMESTAMP
        assert isinstance(fv.stream_source, PushSource) == declared.pushed


def test_the_feast_entities_and_service_are_the_declared_ones(repo):
    # Feast adds a placeholder entity of its own ("__dummy") for views without one.
    assert sorted(
        (e.name, e.join_key, e.value_type, e.description) for e in repo.entities if e.name != "__dummy"
    ) == sorted((e.name, e.join_key, ValueType.STRING, e.description) for e in ENTITIES)
    (service,) = repo.feature_services
    assert service.name == FEATURE_SERVICE
    assert [p.name for p in service.feature_view_projections] == list(SERVICE_VIEWS)
    assert [[f.name for f in p.features] for p in service.feature_view_projections] == [
        list(VIEWS[v].features) for v in SERVICE_VIEWS
    ]


def test_the_parquet_schemas_are_the_declared_columns():
    assert list(SCHEMAS) == list(VIEWS)
    for name, declared in VIEWS.items():
        expected = [(declared.join_key, pa.string()), (EVENT_TIMESTAMP, ARROW[TIMESTAMP])]
        expected += [(f, ARROW[t]) for f, t in declared.features.items()]
        assert [(field.name, field.type) for field in SCHEMAS[name]] == expected


def test_the_stream_computes_exactly_the_pushed_views_and_their_declared_columns():
    assert set(COMPUTED_VIEWS) == {name for name, view in VIEWS.items() if view.pushed}
    pipeline = FeaturePipeline(Catalogue(category={"i1": "dress"}, retail={"i1": 120}, units={"i1": 2}))
    t = 400 * DAY_US
    pipeline.process(CREATED, "e1", "i1", "c1", t, 2_500, 4)
    pipeline.process(CREATED, "e2", "i1", "c2", t + DAY_US, 3_000, 2)
    pipeline.process(CANCELLED, "e3", "i1", "c1", t + 2 * DAY_US)
    pipeline.advance(t + 40 * DAY_US)
    for name, table in pipeline.take_tables().items():
        assert table.num_rows > 0
        assert table.column_names == list(VIEWS[name].columns)
        assert to_table(name, table).schema.equals(SCHEMAS[name])  # the writers' cast takes every column


def test_the_backfill_writes_every_declared_static_feature(small_history):
    for name, frame in static_rows(small_history).items():
        assert not VIEWS[name].pushed
        table = to_table(name, frame)  # a declared column the backfill lacks raises here
        assert table.num_rows == len(frame) > 0


_TEST_VIEW = View("test_view", ITEM, timedelta(days=1), {"count": INT, "mean": FLOAT}, pushed=True)


def _spec(columns):
    return declared_spec(_TEST_VIEW, (DAY_US,), 1, columns)


def test_a_feature_declared_and_not_computed_fails_when_the_spec_is_made():
    with pytest.raises(ValueError, match=r"declared and not computed \['mean'\]"):
        _spec(lambda rows: {"count": rows.sums[:, 0, 0]})
    with pytest.raises(ValueError, match=r"computed and not declared \['extra'\]"):
        _spec(lambda rows: {"count": rows.sums[:, 0, 0], "mean": rows.sums[:, 0, 0] / 2, "extra": rows.at_us})


def test_a_feature_of_another_type_fails_when_the_spec_is_made():
    with pytest.raises(TypeError, match="mean"):
        _spec(lambda rows: {"count": rows.sums[:, 0, 0], "mean": rows.sums[:, 0, 0]})  # int, declared float


def test_rows_follow_the_declared_order_whatever_order_the_logic_returns():
    engine = WindowEngine(_spec(lambda rows: {"mean": rows.sums[:, 0, 0] / 2, "count": rows.sums[:, 0, 0]}))
    engine.apply("i1", DAY_US, (3,))
    assert engine.take_rows() == [{"item_id": "i1", "event_timestamp": DAY_US, "count": 3, "mean": 1.5}]
    assert engine.take_table().column_names == ["item_id", "event_timestamp", "count", "mean"]


def test_a_declaration_takes_only_the_type_vocabulary_and_free_names():
    with pytest.raises(ValueError, match="unknown feature types"):
        View("bad", ITEM, timedelta(0), {"price": "decimal"}, pushed=False)
    with pytest.raises(ValueError, match="may not be named"):
        View("bad", ITEM, timedelta(0), {"item_id": STRING}, pushed=False)
