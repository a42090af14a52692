"""State files: a round trip gives the identical state, and loading never unpickles."""

import pickle
from datetime import UTC, datetime

import numpy as np
import pytest

from rental.settings import Settings
from streaming.consumer import checkpoint
from streaming.consumer.checkpoint import StateFormatError
from streaming.events import CANCELLED, CREATED
from streaming.features.pipeline import Catalogue, FeaturePipeline
from streaming.features.windows import DAY_US


def _pipeline() -> FeaturePipeline:
    items = [f"i{n}" for n in range(40)]
    catalogue = Catalogue(
        category={item: ("dress", "bag", "coat")[n % 3] for n, item in enumerate(items)},
        retail={item: 100 + 7 * n for n, item in enumerate(items)},
        units={item: 1 + n % 3 for n, item in enumerate(items)},
    )
    return FeaturePipeline(catalogue)


def _events(start: int, stop: int) -> list[tuple]:
    """Bookings over 400 days (nodes leave the longest window, timers fire), some cancelled,
    some late, customers with non-ASCII ids."""
    out = []
    for i in range(start, stop):
        t = i * DAY_US // 3 - (5 * DAY_US if i % 17 == 0 else 0)
        out.append((CREATED, f"e{i}", f"i{i * 7 % 40}", f"c{i % 23}-é✓", t, 1000 + i, 1 + i % 5))
        if i % 5 == 0:
            out.append((CANCELLED, f"x{i}", f"i{i * 7 % 40}", f"c{i % 23}-é✓", t + DAY_US // 7, 0, 0))
    return out


def _assert_identical(got, want, where="state"):
    assert type(got) is type(want), where
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape, where
        assert np.array_equal(got, want), where
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            _assert_identical(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            _assert_identical(a, b, f"{where}[{i}]")
    else:
        assert got == want, where


def test_a_checkpoint_round_trip_gives_the_identical_state_and_resumes_exactly(tmp_path):
    settings = Settings(data_dir=tmp_path)
    whole, first = _pipeline(), _pipeline()
    events = _events(0, 1500)
    whole.process_many(events)
    first.process_many(events[:1000])
    state = first.state()
    assert len(state["dedup"]["ids"]) and all(len(e["entities"]) for e in state["engines"].values())
    checkpoint.save(settings, "group", "bookings", 3, 12345, state)
    saved = checkpoint.load(settings, "group", "bookings", 3)
    _assert_identical(saved, {"offset": 12345, "state": state})

    second = _pipeline()
    second.restore(saved["state"])
    second.process_many(events[1000:])
    for view, engine in whole.engines.items():
        for key in engine.entities:
            assert second.engines[view].values(key) == engine.values(key)


def test_the_backfill_snapshot_round_trips_with_its_moment_and_split_states(tmp_path):
    settings = Settings(data_dir=tmp_path)
    pipeline = _pipeline()
    pipeline.process_many(_events(0, 300))
    as_of = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    for state in (pipeline.state(), pipeline.state(keep=lambda key: key in ("i3", "bag", "c4-é✓"))):
        checkpoint.save_backfill(settings, as_of, state)
        _assert_identical(checkpoint.load_backfill(settings), {"as_of": as_of, "state": state})
    assert checkpoint.load(settings, "group", "bookings", 0) is None  # nothing saved: None
    empty = _pipeline().state()  # a partition that has read nothing: arrays of no rows
    checkpoint.save(settings, "group", "bookings", 0, 0, empty)
    _assert_identical(checkpoint.load(settings, "group", "bookings", 0), {"offset": 0, "state": empty})


class _RunsCode:
    """A pickle payload that, if ever unpickled, leaves a file behind."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_at_a_checkpoints_path_is_refused_without_running_it(tmp_path):
    settings = Settings(data_dir=tmp_path)
    marker = tmp_path / "ran"
    path = settings.state_dir / "group" / f"bookings-0{checkpoint.SUFFIX}"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"offset": 1, "state": _RunsCode(marker)}, protocol=5))
    with pytest.raises(StateFormatError, match=r"pickle.*Delete"):
        checkpoint.load(settings, "group", "bookings", 0)
    assert not marker.exists()


def test_an_old_pickled_checkpoint_or_backfill_is_refused_with_what_to_do(tmp_path):
    settings = Settings(data_dir=tmp_path)
    marker = tmp_path / "ran"
    old = settings.state_dir / "items-group" / "bookings-2.pkl"
    old.parent.mkdir(parents=True)
    old.write_bytes(pickle.dumps({"offset": 1, "state": _RunsCode(marker)}))
    with pytest.raises(StateFormatError, match=r"old pickle format.*Delete .*items-group"):
        checkpoint.load(settings, "items-group", "bookings", 2)
    (settings.state_dir / "backfill.pkl").write_bytes(pickle.dumps({"as_of": _RunsCode(marker)}))
    with pytest.raises(StateFormatError, match=r"old pickle format.*rental features backfill"):
        checkpoint.load_backfill(settings)
    assert not marker.exists()


def _tampered(tmp_path, edit) -> Settings:
    """A valid checkpoint whose header ``edit`` rewrites (lengths kept consistent)."""
    import orjson

    settings = Settings(data_dir=tmp_path)
    checkpoint.save(settings, "g", "t", 0, 7, {"a": np.arange(4), "b": (1, "x")})
    path = settings.state_dir / "g" / f"t-0{checkpoint.SUFFIX}"
    raw = path.read_bytes()
    n = int.from_bytes(raw[8:16], "little")
    header = orjson.loads(raw[16 : 16 + n])
    edit(header)
    new = orjson.dumps(header)
    pad = -(-len(new) // 8) * 8 - len(new)
    data = raw[16 + -(-n // 8) * 8 :]
    path.write_bytes(checkpoint.MAGIC + len(new).to_bytes(8, "little") + new + bytes(pad) + data)
    return settings


def test_object_arrays_other_versions_and_truncated_files_are_refused(tmp_path):
    def object_dtype(header):
        header["arrays"][0]["dtype"] = "|O"

    def next_version(header):
        header["version"] = checkpoint.VERSION + 1

    def too_long(header):
        header["arrays"][0]["shape"] = [10**6]

    for edit, message in ((object_dtype, "dtype object"), (next_version, "version"), (too_long, "truncated")):
        settings = _tampered(tmp_path / edit.__name__, edit)
        with pytest.raises(StateFormatError, match=message):
            checkpoint.load(settings, "g", "t", 0)
    assert checkpoint.load(_tampered(tmp_path / "same", lambda h: None), "g", "t", 0)["state"]["b"] == (1, "x")
    with pytest.raises(TypeError, match="objects"):
        checkpoint.save(Settings(data_dir=tmp_path), "g", "t", 1, 0, {"keys": np.array(["a", None], dtype=object)})
