"""A user's own history loads through the same schema as the simulator's, bad rows named."""

import pandas as pd
import pytest

from streaming.history.tables import TableError, history_paths, load_history, write_history


@pytest.fixture()
def user_files(tmp_path, small_history):
    """The small simulated history as a user would export it: CSV, naive UTC timestamps."""
    items = small_history.items.drop(columns=["units"])
    customers = small_history.customers.drop(columns=["preferred_category", "signup_date"])
    bookings = small_history.bookings.drop(columns=["expected_price_per_day", "recent_bookings_30d"]).head(2_000)
    bookings = bookings.assign(event_time=bookings["event_time"].dt.tz_localize(None))
    paths = {}
    for name, frame in (("items", items), ("customers", customers), ("bookings", bookings)):
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def _edit_csv(path, row, column, value):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[row - 1, column] = value
    frame.to_csv(path, index=False)


def test_user_csv_loads_and_matches_the_simulated_tables(user_files, small_history, tmp_path):
    history = load_history(user_files["items"], user_files["customers"], user_files["bookings"])
    assert len(history.items) == len(small_history.items)
    expected = small_history.bookings.head(2_000).reset_index(drop=True)
    pd.testing.assert_series_equal(history.bookings["event_time"], expected["event_time"], check_dtype=False)
    assert history.bookings["price_per_day"].tolist() == expected["price_per_day"].tolist()
    assert (history.items["units"] == 1).all()  # filled in when a catalogue has none
    write_history(history, tmp_path / "out")
    again = load_history(*history_paths(tmp_path / "out"))
    assert again.bookings["booking_id"].tolist() == history.bookings["booking_id"].tolist()


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("price_per_day", "-3", "row 17 (line 18), column price_per_day: must be > 0 (got -3.0)"),
        ("price_per_day", "cheap", "row 17 (line 18), column price_per_day: not a number (got 'cheap')"),
        ("rental_days", "2.5", "row 17 (line 18), column rental_days: not a whole number (got '2.5')"),
        ("rental_days", "0", "row 17 (line 18), column rental_days: must be >= 1"),
        (
            "event_time",
            "yesterday",
            "row 17 (line 18), column event_time: not a timestamp (use ISO 8601) (got 'yesterday')",
        ),
        ("item_id", "", "row 17 (line 18), column item_id: missing value"),
        ("item_id", "item_999999", "row 17 (line 18), column item_id: unknown item (got 'item_999999')"),
        ("rental_start", "2000-01-01", "row 17 (line 18), column rental_start: before the booking's event_time"),
    ],
)
def test_a_bad_booking_row_is_reported_with_its_row_and_column(user_files, column, value, message):
    _edit_csv(user_files["bookings"], 17, column, value)
    with pytest.raises(TableError) as error:
        load_history(user_files["items"], user_files["customers"], user_files["bookings"])
    assert message in str(error.value)
    assert "bookings.csv" in str(error.value)


def test_bad_catalogue_values_and_missing_columns_are_named(user_files):
    _edit_csv(user_files["items"], 3, "retail_price", "-5")
    with pytest.raises(TableError, match=r"items.csv row 3 \(line 4\), column retail_price: must be > 0"):
        load_history(user_files["items"], user_files["customers"], user_files["bookings"])
    frame = pd.read_csv(user_files["items"]).drop(columns=["brand", "retail_price"])
    frame.to_csv(user_files["items"], index=False)
    with pytest.raises(TableError, match=r"items.csv: missing column\(s\) \['brand'\]"):
        load_history(user_files["items"], user_files["customers"], user_files["bookings"])


NASTY = ("Cotton-Jersey, Loose, Summer, Seasonal", "Robe d'été à fleurs / rose 🌸", "x" * 500, "a/b\\c; DROP")


def test_the_minimum_catalogue_and_bookings_load_with_every_optional_column_absent(user_files, tmp_path):
    """item_id, brand, category; bookings without cancelled_at or currency: every absent column
    is added with what its absence means, so no later step meets a missing column."""
    items = pd.read_csv(user_files["items"], dtype=str)[["item_id", "brand", "category"]]
    items["category"] = [NASTY[i % len(NASTY)] for i in range(len(items))]
    items["brand"] = [f"{NASTY[(i + 1) % len(NASTY)]} {i % 7}" for i in range(len(items))]
    items.to_csv(user_files["items"], index=False)
    bookings = pd.read_csv(user_files["bookings"], dtype=str).drop(columns=["cancelled_at", "currency"])
    bookings.to_csv(user_files["bookings"], index=False)
    history = load_history(user_files["items"], user_files["customers"], user_files["bookings"])
    assert set(history.items["category"]) == set(NASTY)
    assert (history.items["units"] == 1).all() and history.items["retail_price"].isna().all()
    for column in ("brand_tier", "condition", "listing_date", "colour", "size"):
        assert history.items[column].isna().all(), column
    assert history.bookings["cancelled_at"].isna().all() and (history.bookings["currency"] == "GBP").all()
    write_history(history, tmp_path / "out")
    again = load_history(*history_paths(tmp_path / "out"))
    pd.testing.assert_frame_equal(again.items, history.items, check_dtype=False)


def test_tier_condition_and_segment_are_the_catalogues_own_words(user_files):
    _edit_csv(user_files["items"], 3, "condition", "worn twice, like new")
    _edit_csv(user_files["items"], 4, "brand_tier", "Maison / couture ✨")
    _edit_csv(user_files["items"], 5, "condition", "")  # blank: unknown
    _edit_csv(user_files["bookings"], 2, "currency", "")  # blank: what an absent column means
    history = load_history(user_files["items"], user_files["customers"], user_files["bookings"])
    assert history.bookings["currency"].notna().all()
    assert history.items.loc[2, "condition"] == "worn twice, like new"
    assert history.items.loc[3, "brand_tier"] == "Maison / couture ✨"
    assert pd.isna(history.items.loc[4, "condition"])


def test_quarantine_sets_bad_rows_aside_with_their_reason_and_keeps_the_rest(user_files, tmp_path):
    _edit_csv(user_files["bookings"], 5, "price_per_day", "-1")
    _edit_csv(user_files["bookings"], 9, "item_id", "item_999999")
    history = load_history(user_files["items"], user_files["customers"], user_files["bookings"], quarantine=True)
    assert len(history.bookings) == 1_998
    rejected = history.rejected["bookings"]
    assert len(rejected) == 2
    assert any("price_per_day: must be > 0" in r for r in rejected["reason"])
    assert any("item_id: unknown item" in r for r in rejected["reason"])
    paths = write_history(history, tmp_path / "q")
    assert len(pd.read_csv(paths["rejected_bookings"])) == 2


def test_history_load_says_what_it_ignored_and_what_each_absent_column_means(user_files, tmp_path):
    from typer.testing import CliRunner

    from rental.cli import app
    from streaming.history.tables import OPTIONAL_MEANING, TABLES

    assert {f"{t.name}.{c.name}" for t in TABLES.values() for c in t.columns if not c.required} == set(OPTIONAL_MEANING)
    items = pd.read_csv(user_files["items"], dtype=str)[["item_id", "brand", "category"]]
    items.assign(name="Robe, d'été [bold]🌸[/bold]", listed_price="12.5").to_csv(user_files["items"], index=False)
    args = [f"--{name}={path}" for name, path in user_files.items()]
    result = CliRunner().invoke(app, ["history", "load", *args, f"--out={tmp_path / 'out'}"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "items.csv: ignored (not in the contract): name, listed_price" in result.output
    assert "items.csv: no retail_price, which means unknown (null)" in result.output
    assert "items.csv: no units, which means 1" in result.output
