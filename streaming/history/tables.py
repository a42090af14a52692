"""The three tables of booking history, one schema for the simulator's output and a user's files.

``load_history`` reads items, customers and bookings from CSV or Parquet, checks every row
against the schema and the tables against each other, and names the row and column of each
problem. The simulator's own Parquet goes through the same path, so the rest of the system
never sees a table that skipped the checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streaming.events import MAX_RENTAL_DAYS

MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "string", "int", "float", "date", "timestamp"
    required: bool = True
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # strictly greater than
    allowed: tuple[str, ...] | None = None
    unique: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: str

    def arrow_schema(self, present: list[str]) -> pa.Schema:
        types = {
            "string": pa.string(),
            "int": pa.int64(),
            "float": pa.float64(),
            "date": pa.date32(),
            "timestamp": pa.timestamp("us", tz="UTC"),
        }
        return pa.schema(
            [pa.field(c.name, types[c.kind], nullable=c.nullable) for c in self.columns if c.name in present]
        )


ITEMS = Table(
    "items",
    (
        Column("item_id", "string", unique=True),
        Column("brand", "string"),
        Column("category", "string"),
        # Optional, in the catalogue's own words (absent or blank: unknown, see OPTIONAL_MEANING).
        Column("brand_tier", "string", required=False, nullable=True),
        Column("colour", "string", required=False, nullable=True),
        Column("size", "string", required=False, nullable=True),
        Column("retail_price", "float", required=False, nullable=True, above=0, maximum=1_000_000),
        Column("condition", "string", required=False, nullable=True),
        Column("listing_date", "date", required=False, nullable=True),
        Column("units", "int", required=False, nullable=True, minimum=1, maximum=10_000),
    ),
    key="item_id",
)
CUSTOMERS = Table(
    "customers",
    (
        Column("customer_id", "string", unique=True),
        Column("segment", "string", required=False, nullable=True),
        Column("preferred_category", "string", required=False, nullable=True),
        Column("signup_date", "date", required=False, nullable=True),
    ),
    key="customer_id",
)
BOOKINGS = Table(
    "bookings",
    (
        Column("booking_id", "string", unique=True),
        Column("item_id", "string"),
        Column("customer_id", "string"),
        Column("event_time", "timestamp"),
        Column("rental_start", "date"),
        Column("rental_days", "int", minimum=1, maximum=MAX_RENTAL_DAYS),
        Column("price_per_day", "float", above=0, maximum=100_000),
        Column("currency", "string", required=False, nullable=True),
        Column("cancelled_at", "timestamp", required=False, nullable=True),
        # Known only for simulated data: the true expected price and its popularity input.
        Column("expected_price_per_day", "float", required=False, nullable=True, above=0),
        Column("recent_bookings_30d", "int", required=False, nullable=True, minimum=0),
    ),
    key="booking_id",
)
TABLES = {t.name: t for t in (ITEMS, CUSTOMERS, BOOKINGS)}

# What an optional column's absence means (the whole column, or a blank value where it may be
# blank). ``validate`` adds every absent column with this value, so no later step (backfill,
# live stages, training, serving) meets a missing column; "unknown" is a null the model routes.
ABSENT_MEANS = {
    "units": 1,  # one unit of the item to rent
    "currency": "GBP",
}
OPTIONAL_MEANING = {
    "items.brand_tier": "unknown (null); any words, e.g. the platform's own tiers",
    "items.colour": "unknown (null)",
    "items.size": "unknown (null)",
    "items.retail_price": "unknown (null): a missing model input; 0 in a customer's average retail",
    "items.condition": "unknown (null); any words, e.g. 'like new', 'worn twice'",
    "items.listing_date": "unknown (null): valid from the epoch, item age unknown",
    "items.units": "1",
    "customers.segment": "unknown (null); any words",
    "customers.preferred_category": "unknown (null)",
    "customers.signup_date": "unknown (null)",
    "bookings.currency": "GBP",
    "bookings.cancelled_at": "never cancelled (null)",
    "bookings.expected_price_per_day": "unknown (null): no noise floor (only a simulator knows it)",
    "bookings.recent_bookings_30d": "unknown (null)",
}
# An item whose listing date is unknown: its attributes hold from here (not the epoch itself,
# which Feast's online store answers for a key it does not have).
UNKNOWN_LISTING_VALID_FROM = datetime(1970, 1, 2, tzinfo=UTC)
_NULL_DTYPES = {"string": "string", "int": "Int64", "float": "float64", "date": "object",
                "timestamp": "datetime64[ns, UTC]"}  # fmt: skip


def _absent(column: Column, index: pd.Index) -> pd.Series:
    """The column an absent optional column stands for (``ABSENT_MEANS``, or nulls)."""
    if column.name in ABSENT_MEANS:
        return pd.Series(ABSENT_MEANS[column.name], index=index, dtype=_NULL_DTYPES[column.kind])
    return pd.Series(None, index=index, dtype=_NULL_DTYPES[column.kind])


class TableError(ValueError):
    """A table that does not fit its schema; the message lists rows and columns."""


@dataclass
class Problems:
    source: str
    line_offset: int  # CSV: data row 1 is on line 2
    found: list[str] = field(default_factory=list)
    reasons: dict[int, list[str]] = field(default_factory=dict)  # row -> what is wrong with it
    count: int = 0

    def add(self, rows: np.ndarray, column: str, what: str, values: pd.Series | None = None) -> None:
        self.count += len(rows)
        for row in rows:
            self.reasons.setdefault(int(row), []).append(f"{column}: {what}")
        for i, row in enumerate(rows[: max(0, MAX_REPORTED_PROBLEMS - len(self.found))]):
            where = f"row {row + 1}" + (f" (line {row + 1 + self.line_offset})" if self.line_offset else "")
            got = "" if values is None else f" (got {_shown(values.iloc[i])})"
            self.found.append(f"{self.source} {where}, column {column}: {what}{got}")

    def raise_if_any(self) -> None:
        if self.found:
            more = f"\n... and {self.count - len(self.found)} more" if self.count > len(self.found) else ""
            raise TableError(f"{self.count} problem(s) in {self.source}:\n" + "\n".join(self.found) + more)


def _shown(value) -> str:
    value = value.item() if hasattr(value, "item") else value
    return repr(value) if isinstance(value, str) else str(value)


def read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet" or path.is_dir():
        return pq.read_table(path).to_pandas()
    if suffix in {".csv", ".gz"}:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    raise TableError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")


def _coerce(raw: pd.Series, column: Column, problems: Problems) -> pd.Series:
    present = raw.notna() & (raw.astype(str).str.strip() != "")
    if column.kind == "string":
        out = raw.where(present).astype("string").str.strip()
    elif column.kind in ("int", "float"):
        out = pd.to_numeric(raw.where(present), errors="coerce")
        bad = present & (out.isna() | ~np.isfinite(out.fillna(0)))
        if bad.any():
            problems.add(np.flatnonzero(bad), column.name, "not a number", raw[bad])
        if column.kind == "int":
            fractional = out.notna() & (out != out.round())
            if fractional.any():
                problems.add(np.flatnonzero(fractional), column.name, "not a whole number", raw[fractional])
            out = out.round().astype("Int64")
    elif column.kind == "date":
        out = pd.to_datetime(raw.where(present), errors="coerce", format="mixed").dt.tz_localize(None).dt.normalize()
        bad = present & out.isna()
        if bad.any():
            problems.add(np.flatnonzero(bad), column.name, "not a date (use YYYY-MM-DD)", raw[bad])
        out = out.dt.date
    else:  # timestamp: naive values are read as UTC
        out = pd.to_datetime(raw.where(present), errors="coerce", utc=True, format="mixed")
        bad = present & out.isna()
        if bad.any():
            problems.add(np.flatnonzero(bad), column.name, "not a timestamp (use ISO 8601)", raw[bad])
    if not column.nullable:
        missing = ~present
        if missing.any():
            problems.add(np.flatnonzero(missing), column.name, "missing value")
    return out


def _check_ranges(frame: pd.DataFrame, column: Column, problems: Problems) -> None:
    values = frame[column.name]
    checks = []
    if column.above is not None:
        checks.append((values.notna() & ~(values > column.above), f"must be > {column.above:g}"))
    if column.minimum is not None:
        checks.append((values.notna() & ~(values >= column.minimum), f"must be >= {column.minimum:g}"))
    if column.maximum is not None:
        checks.append((values.notna() & ~(values <= column.maximum), f"must be <= {column.maximum:g}"))
    if column.allowed is not None:
        checks.append((values.notna() & ~values.isin(column.allowed), f"must be one of {list(column.allowed)}"))
    if column.unique:
        checks.append((values.notna() & values.duplicated(keep="first"), "duplicate id"))
    for bad, what in checks:
        bad = bad.fillna(False).to_numpy(bool)
        if bad.any():
            problems.add(np.flatnonzero(bad), column.name, what, values[bad])


def validate(frame: pd.DataFrame, table: Table, source: str, line_offset: int = 0) -> tuple[pd.DataFrame, Problems]:
    """Coerce a raw frame to the table's types; collect every problem with its row and column."""
    frame = frame.reset_index(drop=True)
    problems = Problems(source, line_offset)
    missing = [c.name for c in table.columns if c.required and c.name not in frame.columns]
    if missing:
        raise TableError(f"{source}: missing column(s) {missing}; found {list(frame.columns)}")
    out = pd.DataFrame(index=frame.index)
    for column in table.columns:
        if column.name in frame.columns:
            out[column.name] = _coerce(frame[column.name], column, problems)
            _check_ranges(out, column, problems)
            if column.name in ABSENT_MEANS:  # a blank value means what the absent column means
                out[column.name] = out[column.name].fillna(ABSENT_MEANS[column.name])
        else:
            out[column.name] = _absent(column, frame.index)
    if table is BOOKINGS:
        _check_booking_times(out, problems)
    return out, problems


def _check_booking_times(bookings: pd.DataFrame, problems: Problems) -> None:
    booked_on = bookings["event_time"].dt.tz_convert("UTC").dt.date
    early = (bookings["rental_start"] < booked_on).fillna(False).to_numpy(bool)
    if early.any():
        problems.add(
            np.flatnonzero(early), "rental_start", "before the booking's event_time", bookings["rental_start"][early]
        )
    before = (bookings["cancelled_at"] < bookings["event_time"]).fillna(False).to_numpy(bool)
    if before.any():
        problems.add(
            np.flatnonzero(before), "cancelled_at", "before the booking's event_time", bookings["cancelled_at"][before]
        )


@dataclass
class History:
    items: pd.DataFrame
    customers: pd.DataFrame
    bookings: pd.DataFrame
    rejected: dict[str, pd.DataFrame] = field(default_factory=dict)


def header_report(path: Path, table: Table) -> tuple[list[str], list[str]]:
    """A file's columns the table does not know (ignored: a product name, a listed price), and
    the table's optional columns it lacks (each then means ``OPTIONAL_MEANING`` says)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet" or path.is_dir():
        names = pq.read_schema(path).names if path.is_file() else list(pq.read_table(path).column_names)
    else:
        names = list(pd.read_csv(path, dtype=str, nrows=0).columns)
    known = {c.name for c in table.columns}
    return [n for n in names if n not in known], [c.name for c in table.columns if c.name not in names]


def _line_offset(path: Path) -> int:
    return 1 if path.suffix.lower() in {".csv", ".gz"} else 0


def _load_one(path: Path, table: Table, quarantine: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = read_table(path)
    frame, problems = validate(raw, table, path.name, _line_offset(path))
    return _split_bad(raw, frame, problems, quarantine)


def _split_bad(raw: pd.DataFrame, frame: pd.DataFrame, problems: Problems, quarantine: bool):
    if not quarantine:
        problems.raise_if_any()
    bad = np.zeros(len(frame), dtype=bool)
    bad[list(problems.reasons)] = True
    rejected = raw.reset_index(drop=True)[bad].copy()
    rejected.insert(0, "source_row", np.flatnonzero(bad) + 1)
    rejected.insert(1, "reason", ["; ".join(problems.reasons[r]) for r in np.flatnonzero(bad)])
    return frame[~bad], rejected  # the index keeps each row's position in the file


def _drop_orphans(
    bookings: pd.DataFrame, column: str, known: pd.Series, problems: Problems, quarantine: bool, rejected: list
):
    orphan = ~bookings[column].isin(known)
    if not orphan.any():
        return bookings
    problems.add(
        bookings.index[orphan].to_numpy(), column, f"unknown {column.removesuffix('_id')}", bookings[column][orphan]
    )
    if not quarantine:
        problems.raise_if_any()
    orphans = bookings[orphan].assign(reason=f"{column}: unknown {column.removesuffix('_id')}")
    rejected.append(orphans.assign(source_row=orphans.index + 1))
    return bookings[~orphan]


def load_history(items: Path, customers: Path, bookings: Path, quarantine: bool = False) -> History:
    """Read and check the three tables. With ``quarantine``, bad rows are set aside, not fatal."""
    item_frame, item_bad = _load_one(Path(items), ITEMS, quarantine)
    customer_frame, customer_bad = _load_one(Path(customers), CUSTOMERS, quarantine)
    booking_frame, booking_bad = _load_one(Path(bookings), BOOKINGS, quarantine)
    orphans: list[pd.DataFrame] = []
    problems = Problems(Path(bookings).name, _line_offset(Path(bookings)))
    booking_frame = _drop_orphans(booking_frame, "item_id", item_frame["item_id"], problems, quarantine, orphans)
    booking_frame = _drop_orphans(
        booking_frame, "customer_id", customer_frame["customer_id"], problems, quarantine, orphans
    )
    item_frame, customer_frame = item_frame.reset_index(drop=True), customer_frame.reset_index(drop=True)
    rejected = {"items": item_bad, "customers": customer_bad, "bookings": pd.concat([booking_bad, *orphans])}
    return History(
        item_frame,
        customer_frame,
        booking_frame.sort_values("event_time", kind="stable").reset_index(drop=True),
        rejected,
    )


def write_table(frame: pd.DataFrame, table: Table, path: Path) -> Path:
    """Write with the table's exact Arrow types, under a temporary name, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    present = [c.name for c in table.columns if c.name in frame.columns]
    arrow = pa.Table.from_pandas(frame[present], schema=table.arrow_schema(present), preserve_index=False)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(arrow, tmp, compression="zstd")
    tmp.replace(path)
    return path


def write_history(history: History, directory: Path) -> dict[str, Path]:
    paths = {
        "items": write_table(history.items, ITEMS, directory / "items.parquet"),
        "customers": write_table(history.customers, CUSTOMERS, directory / "customers.parquet"),
        "bookings": write_table(history.bookings, BOOKINGS, directory / "bookings.parquet"),
    }
    for name, rejected in history.rejected.items():
        if len(rejected):
            paths[f"rejected_{name}"] = directory / f"rejected_{name}.csv"
            rejected.to_csv(paths[f"rejected_{name}"], index=False)
    return paths


def history_paths(directory: Path) -> tuple[Path, Path, Path]:
    return directory / "items.parquet", directory / "customers.parquet", directory / "bookings.parquet"
