"""Compaction of the offline store: closed days become one file each, with the same rows."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow.parquet as pq

from rental.settings import Settings
from streaming.feature_store.offline import STREAM_COMPRESSION, compact, read_view, view_dir, write_rows
from streaming.features.windows import DAY_US

DAY1 = 20_000 * DAY_US  # 2024-10-04
DAY2 = DAY1 + DAY_US


def _row(item: str, at_us: int, bookings: int) -> dict:
    return {"item_id": item, "event_timestamp": at_us, "bookings_7d": bookings, "bookings_30d": bookings,
            "revenue_7d": 10.0 * bookings, "revenue_30d": 10.0 * bookings, "avg_price_30d": None,
            "utilisation_30d": 0.1, "cancellations_30d": 0, "last_booking_at": at_us}  # fmt: skip


def _files(settings: Settings, day: str) -> list[str]:
    return sorted(p.name for p in (view_dir(settings, "item_popularity") / f"date={day}").glob("*.parquet"))


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop_duplicates().sort_values(["item_id", "event_timestamp"]).reset_index(drop=True)


def test_a_closed_day_becomes_one_file_with_the_same_rows_and_today_is_left_alone(tmp_path):
    settings = Settings(data_dir=tmp_path)
    for k in range(5):  # five checkpoints' appends over two days; one replayed (a duplicate file)
        rows = [_row(f"i{n}", DAY1 + k * 1_000_000 + n, k + n) for n in range(3)] + [_row("i9", DAY2 + k, k)]
        write_rows(settings, "item_popularity", rows, tag="items")
        if k == 2:
            write_rows(settings, "item_popularity", rows, tag="items")
    before = read_view(settings, "item_popularity")
    assert len(_files(settings, "2024-10-04")) == 6 and len(_files(settings, "2024-10-05")) == 6

    done = compact(settings, before=date(2024, 10, 5))

    assert done["item_popularity"] == (6, 1)
    assert len(_files(settings, "2024-10-04")) == 1 and _files(settings, "2024-10-04")[0].startswith("compacted-")
    assert len(_files(settings, "2024-10-05")) == 6  # not closed yet: untouched
    after = read_view(settings, "item_popularity")
    assert len(after) == len(before) - 3  # the replayed day-1 rows once; day 2 keeps its duplicate
    pd.testing.assert_frame_equal(_sorted(after), _sorted(before))
    assert compact(settings, before=date(2024, 10, 5))["item_popularity"] == (0, 0)  # nothing left to merge


def _codecs(settings: Settings, day: str) -> set[str]:
    folder = view_dir(settings, "item_popularity") / f"date={day}"
    return {pq.ParquetFile(f).metadata.row_group(0).column(0).compression for f in folder.glob("*.parquet")}


def test_stream_files_are_written_fast_and_compaction_keeps_the_day_compressed_tighter(tmp_path):
    settings = Settings(data_dir=tmp_path)
    for k in range(2):
        rows = [_row(f"i{n}", DAY1 + k * 1_000 + n, n) for n in range(50)]
        write_rows(settings, "item_popularity", rows, tag="items", compression=STREAM_COMPRESSION)
    assert _codecs(settings, "2024-10-04") == {"LZ4"}

    compact(settings, before=date(2024, 10, 5))

    assert _codecs(settings, "2024-10-04") == {"ZSTD"}
    assert len(read_view(settings, "item_popularity")) == 100


def test_old_days_of_a_write_share_a_month_folder_and_a_closed_month_compacts(tmp_path):
    settings = Settings(data_dir=tmp_path)
    days = [DAY1 - k * DAY_US for k in range(70)]  # 2024-07-27 .. 2024-10-04, newest last below
    rows = [_row(f"i{k % 7}", at + k, k) for k, at in enumerate(days)]  # newest first: a reorder
    write_rows(settings, "item_popularity", rows, tag="items")
    folders = sorted(p.name for p in view_dir(settings, "item_popularity").iterdir())
    assert folders == ["date=2024-07", "date=2024-08", "date=2024-09", "date=2024-10", "date=2024-10-03",
                       "date=2024-10-04"]  # fmt: skip
    assert pd.Series(days).nunique() == 70 and len(read_view(settings, "item_popularity")) == 70
    month = pq.read_table(next((view_dir(settings, "item_popularity") / "date=2024-09").glob("*.parquet")))
    stamps = month["event_timestamp"].to_pylist()
    assert len(stamps) == 30 and stamps == sorted(stamps, reverse=True)  # the write's own order, kept
    write_rows(settings, "item_popularity", [rows[-1], rows[0]], tag="items")  # replayed: into July and 10-04

    done = compact(settings, before=date(2024, 10, 1))

    assert done["item_popularity"] == (2, 1)  # July's two files; August and September had one each
    assert len(list((view_dir(settings, "item_popularity") / "date=2024-07").glob("*.parquet"))) == 1
    after = read_view(settings, "item_popularity")  # July's replayed row once; 10-04 is still open
    assert len(after) == 71
    assert set(zip(after["item_id"], after["event_timestamp"].astype("int64"), strict=True)) == {
        (r["item_id"], r["event_timestamp"]) for r in rows
    }
