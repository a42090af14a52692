"""The events' JSON Schema for producers in any language, generated from the pydantic models
that validate them (``events.BookingCreated``, ``events.BookingCancelled``,
``catalogue.listing.Listing``), so the published contract and the consumer cannot drift apart.

``rental contracts export`` writes ``contracts/events.schema.json`` at the repository's root;
``--check`` (and ``tests/unit/test_contracts.py``) fails when the checked-in file is not what
the models generate. The schema is the producer's side of the contract: it requires the
constants the models default, ``schema_version`` (so no producer relies on the default once a
version 2 exists) and ``event_type`` (the reader's discriminator, which it cannot default). Rules JSON Schema cannot state (a rental starting before its booking, a
listing's vocabulary, the key equal to ``item_id``) are in the descriptions and in
``contracts/README.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic.json_schema import models_json_schema

from rental.settings import Settings
from streaming.catalogue.listing import Listing
from streaming.events import SCHEMA_VERSION, BookingCancelled, BookingCreated

CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "contracts"
EVENTS_SCHEMA = CONTRACTS_DIR / "events.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
_BOOKINGS = [BookingCreated, BookingCancelled]


def events_schema() -> dict:
    """One document: every value a producer may write to the bookings and items topics (its
    root accepts any of them), each topic's value and key under ``$defs``, and ``x-kafka`` naming
    the default topics and what their keys and values are."""
    _, top = models_json_schema([(model, "validation") for model in [*_BOOKINGS, Listing]],
                                ref_template="#/$defs/{model}")  # fmt: skip
    defs = top["$defs"]
    for model in [*_BOOKINGS, Listing]:  # the constants the reader defaults, a producer sends
        constants = ["schema_version", "event_type"] if model in _BOOKINGS else ["schema_version"]
        required = defs[model.__name__].setdefault("required", [])
        required[:] = constants + [name for name in required if name not in constants]
    booking = {"oneOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in _BOOKINGS],
               "description": "a value on the bookings topic: `event_type` says which event it is"}  # fmt: skip
    key = {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "description": "the message key on both topics: the event's or listing's item_id, as UTF-8 bytes (not JSON)",
    }
    defs = {"BookingEvent": booking, "ItemKey": key, **defs}
    topics = Settings.model_fields
    on_topic = {
        "bookings": {"topic": topics["topic_bookings"].default, "setting": "RENTAL_TOPIC_BOOKINGS",
                     "key": {"$ref": "#/$defs/ItemKey"}, "value": {"$ref": "#/$defs/BookingEvent"}},
        "items": {"topic": topics["topic_items"].default, "setting": "RENTAL_TOPIC_ITEMS", "compacted": True,
                  "key": {"$ref": "#/$defs/ItemKey"}, "value": {"$ref": f"#/$defs/{Listing.__name__}"}},
    }  # fmt: skip
    return {
        "$schema": DIALECT,
        "$id": f"urn:rental-pricing:events:v{SCHEMA_VERSION}",
        "title": "Rental pricing: the events the rental app produces",
        "description": (
            "Each Kafka message's value is one of these, as a UTF-8 JSON object; its key is the item_id "
            "(ItemKey), partitioned by Kafka's default murmur2 partitioner. See contracts/README.md."
        ),
        "x-kafka": on_topic,
        "oneOf": [{"$ref": "#/$defs/BookingEvent"}, {"$ref": f"#/$defs/{Listing.__name__}"}],
        "$defs": defs,
    }


def rendered() -> str:
    """The file's exact text: stable key order, two-space indent, a final newline."""
    return json.dumps(events_schema(), indent=2, ensure_ascii=False) + "\n"


app = typer.Typer(help="The published contracts: the events' JSON Schema for producers.", no_args_is_help=True)


@app.command("export")
def export(
    out: Path = typer.Option(EVENTS_SCHEMA, help="where to write the schema"),
    check: bool = typer.Option(False, "--check", help="write nothing; exit 1 if the file is not current"),
) -> None:
    """Write the events' JSON Schema generated from the models (or check the written one)."""
    text = rendered()
    if check:
        current = out.read_text() if out.exists() else None
        if current != text:
            typer.echo(f"{out} is not what the event models generate: run `rental contracts export`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is current")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    typer.echo(f"wrote {out}")
