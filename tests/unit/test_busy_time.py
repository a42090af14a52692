"""The consumer's busy time, as `rental stream features --stats-json` reports it from its stages."""

import json

import pytest

from streaming.consumer.supervisor import _merge

STAGES = ["items", "customers"]


def _stage(first: float, last_commit: float | None, **extra) -> dict:
    return {"first_record": first, "last_record": first + 5, "last_commit": last_commit, "events": {},
            "duplicates": 0, "dead_letters": 0, "peak_rss_mb": 1.0, "cpu_s": 1.0, "checkpoint_cpu_s": 0.0} | extra  # fmt: skip


def _write(tmp_path, **stages: dict) -> None:
    for name, stats in stages.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(stats | {"events": {name: 10}}))


def test_busy_time_runs_from_the_first_record_to_the_last_commit_that_moved_an_offset(tmp_path):
    _write(tmp_path, items=_stage(100.0, 109.0), customers=_stage(101.0, 109.5))
    assert _merge(tmp_path, STAGES, drained_at=109.8)["busy_s"] == pytest.approx(9.5)  # not the 0.25 s lag poll's 9.8


def test_without_a_stage_commit_time_the_lag_poll_decides(tmp_path):
    _write(tmp_path, items=_stage(100.0, 109.0), customers=_stage(101.0, None))
    assert _merge(tmp_path, STAGES, drained_at=109.8)["busy_s"] == pytest.approx(9.8)


def test_never_drained_means_no_busy_time(tmp_path):
    _write(tmp_path, items=_stage(100.0, 109.0), customers=_stage(101.0, 109.5))
    assert _merge(tmp_path, STAGES, drained_at=None)["busy_s"] is None


def test_the_timeline_places_each_stage_from_the_first_record_any_stage_read(tmp_path):
    _write(tmp_path, items=_stage(100.0, 109.0), customers=_stage(101.0, 109.5))
    timeline = _merge(tmp_path, STAGES, drained_at=109.8)["stage_timeline_s"]
    assert timeline == {
        "items": {"first_record": 0.0, "last_record": 5.0, "last_commit": 9.0},
        "customers": {"first_record": 1.0, "last_record": 6.0, "last_commit": 9.5},
    }
