"""A listing on the ``items`` topic: one item's row of the items table, as JSON.

The same columns, types and bounds as ``history.tables.ITEMS`` (a unit test holds the two
together), so an item listed live and an item in the seed table are the same thing. Extra
fields are refused, as on the booking events: a misspelt field is a mistake to see, not to drop.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from streaming.events import describe_validation_error
from streaming.history.tables import UNKNOWN_LISTING_VALID_FROM

SCHEMA_VERSION = 1
_REQUIRED_TEXT = ("item_id", "brand", "category")


class ListingError(ValueError):
    """A record on the items topic that is not a listing; the message is the DLQ reason."""


class Listing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    item_id: str = Field(min_length=1, max_length=64)
    brand: str = Field(min_length=1)
    category: str = Field(min_length=1)
    # Optional, in the platform's own words; None is unknown (``history.tables.OPTIONAL_MEANING``).
    brand_tier: str | None = None
    colour: str | None = None
    size: str | None = None
    retail_price: float | None = Field(default=None, gt=0, le=1_000_000, allow_inf_nan=False)
    condition: str | None = None
    listing_date: date | None = None
    units: int = Field(default=1, ge=1, le=10_000)

    @field_validator("item_id", "brand", "category", "brand_tier", "colour", "size", "condition")
    @classmethod
    def _stripped(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Blank is unknown where a field may be unknown, as in the items table, and an error elsewhere."""
        value = value if value is None else value.strip()
        if value == "" and info.field_name in _REQUIRED_TEXT:
            raise ValueError("must not be blank")
        return value or None

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @property
    def listed_at(self) -> datetime | None:
        """The listing date as the attributes view's time: midnight UTC, as the backfill writes it
        (None when the date is unknown: the item's age is then unknown too)."""
        if self.listing_date is None:
            return None
        return datetime(self.listing_date.year, self.listing_date.month, self.listing_date.day, tzinfo=UTC)

    @property
    def valid_from(self) -> datetime:
        """When the item's attribute row starts to hold: its listing, or a fixed early day if unknown."""
        return self.listed_at or UNKNOWN_LISTING_VALID_FROM

    def attributes(self) -> dict:
        """The item attributes view's features (``feature_store.views.ITEM_ATTRIBUTES``)."""
        return {
            "brand": self.brand,
            "brand_tier": self.brand_tier,
            "item_category": self.category,
            "colour": self.colour,
            "size": self.size,
            "retail_price": self.retail_price,
            "condition": self.condition,
            "units": self.units,
            "listed_at": self.listed_at,
        }


def decode_listing(key: bytes | None, value: bytes) -> Listing:
    """A record of the items topic as a listing; ``ListingError`` with the reason otherwise.
    Nothing else is raised, whatever the bytes: the topic is written by another system."""
    try:
        listing = Listing.model_validate_json(value)
    except ValidationError as exc:
        raise ListingError(f"listing: {describe_validation_error(exc)}"[:1_000]) from None
    except (RecursionError, ValueError) as exc:
        raise ListingError(f"listing: not JSON ({str(exc)[:200]})") from None
    if key is None or key.decode("utf-8", "replace") != listing.item_id:
        shown = None if key is None else key[:80].decode("utf-8", "replace")
        raise ListingError(f"key: {shown!r} is not the listing's item_id {listing.item_id!r}")
    return listing


def listings(items: pd.DataFrame) -> list[Listing]:
    """An items table (checked by ``history.tables.validate``) as listings, in its order."""
    columns = [name for name in Listing.model_fields if name in items.columns]
    frame = items[columns].astype(object).where(items[columns].notna(), None)
    return [Listing(**row) for row in frame.to_dict("records")]
