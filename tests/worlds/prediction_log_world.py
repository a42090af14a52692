"""An isolated world for the prediction log's consumer: its own data dir, `predictions` and
`bookings` topics and consumer group on the shared broker; quotes and bookings made to order,
the outcomes they must give (worked out here by brute force, independently of
monitoring/log/join.py), and a throughput figure for `make bench-monitor` (``logged_per_s``)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bento_service.schemas import PredictionRecord
from rental.servers.topics import admin_client, ensure_topics
from rental.settings import Settings
from streaming.events import BookingCancelled, BookingCreated, cancelled_event_id, created_event_id, encode
from streaming.producer import make_producer


@dataclass
class LogWorld:
    settings: Settings
    env: dict[str, str]
    processes: list[subprocess.Popen] = field(default_factory=list)

    def monitor(self, *args: str) -> subprocess.Popen:
        """`rental monitor run` as its own process, as an operator would run it."""
        log = open(self.settings.data_dir / f"monitor-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
        process = subprocess.Popen([sys.executable, "-m", "rental.cli", "monitor", "run", "--quiet", *args],
                                   env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.settings.data_dir.glob("monitor-*.log")))

    def producer(self):
        return make_producer(self.settings, linger_ms=20)

    def send(self, producer, quotes=(), events=(), raw=()) -> None:
        """Quotes to `predictions`, booking events to `bookings` (keyed by item id) and ``raw``
        (topic, bytes) pairs, then flushed."""
        for q in quotes:
            producer.send(self.settings.topic_predictions, key=q.item_id, value=q.model_dump_json().encode())
        for e in events:
            producer.send(self.settings.topic_bookings, key=e.item_id, value=encode(e))
        for topic, value in raw:
            producer.send(topic, key="garbage", value=value)
        producer.flush()

    def send_in_order(self, producer, pairs) -> None:
        """``merged`` pairs: quotes and events in event-time order, as the service and the app send them."""
        for _, x in pairs:
            topic = self.settings.topic_predictions if isinstance(x, PredictionRecord) else self.settings.topic_bookings
            producer.send(topic, key=x.item_id, value=x.model_dump_json().encode())
        producer.flush()

    def remove_topics(self) -> None:
        with admin_client(self.settings) as admin:
            admin.delete_topics([self.settings.topic_predictions, self.settings.topic_bookings], raise_errors=False)


def make_log_world(tmp: Path, base: Settings, partitions: int = 3, **overrides: str) -> LogWorld:
    """``overrides``: RENTAL_* environment values for the monitor's process (and these settings)."""
    run = uuid.uuid4().hex[:8]
    values = {
        "RENTAL_DATA_DIR": str(tmp),
        "RENTAL_TOPIC_PREDICTIONS": f"test.{run}.predictions",
        "RENTAL_TOPIC_BOOKINGS": f"test.{run}.bookings",
        "RENTAL_MONITOR_GROUP_ID": f"test-{run}-monitor",
        "RENTAL_KAFKA_PORT": str(base.kafka_port),
        **overrides,
    }
    if base.kafka_is_external:
        values["KAFKA_BOOTSTRAP_SERVERS"] = base.bootstrap_servers
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENTAL_")} | values
    # The subprocess reads ``env``; this process gets the same values as the settings' own fields.
    settings = Settings(**{k.removeprefix("RENTAL_").lower(): v for k, v in values.items() if k.startswith("RENTAL_")})
    with admin_client(settings) as admin:
        day_ms = 24 * 3600 * 1000
        ensure_topics(admin, {settings.topic_predictions: (partitions, day_ms),
                              settings.topic_bookings: (partitions, day_ms)})  # fmt: skip
    return LogWorld(settings, env)


# -- traffic ------------------------------------------------------------------------------------
CATEGORIES = ("dresses", "gowns", "outerwear", "bags", "accessories")


@dataclass
class Traffic:
    quotes: list[PredictionRecord]
    events: list  # BookingCreated / BookingCancelled, in event-time order


def traffic(n_quotes: int, start: datetime, per_s: float = 5.0, items: int = 150, customers: int = 400,
            seed: int = 7, book_share: float = 0.3, window_s: float = 120.0) -> Traffic:  # fmt: skip
    """Quotes ``per_s`` a second of event time from ``start``; a share of them booked by their
    customer (two thirds inside the outcome window, the rest after it), others' bookings of
    the same items, and cancellations of a tenth of the bookings."""
    rng = random.Random(seed)
    quotes, events = [], []
    for i in range(n_quotes):
        at = start + timedelta(seconds=i / per_s)
        item = f"item_{rng.randrange(items):05d}"
        customer = None if rng.random() < 0.05 else f"cust_{rng.randrange(customers):05d}"
        price = round(rng.uniform(20, 200), 2)
        quotes.append(PredictionRecord(
            request_id=f"q{seed}-{i:07d}", quoted_at=at, protocol="http", item_id=item, customer_id=customer,
            rental_start=(at + timedelta(days=10)).date(), rental_days=rng.randint(1, 7),
            features={"category": CATEGORIES[int(item[-5:]) % len(CATEGORIES)], "bookings_7d": rng.randint(0, 9),
                      "brand_tier": rng.choice(["value", "premium", "luxury"])},
            price_per_day=price, total_price=price, currency="GBP", model_version="1",
            features_as_of=at - timedelta(seconds=rng.randint(1, 600)), degraded=False, cold_start=False,
            latency_ms=1.0,
        ))  # fmt: skip
        roll = rng.random()
        if roll < book_share + 0.1:  # someone books this item around now
            booker = customer if (roll < book_share and customer) else f"cust_{rng.randrange(customers):05d}"
            booking_id = f"b{seed}-{i:07d}"
            booked_at = at + timedelta(seconds=rng.uniform(0, window_s * 1.5))
            events.append(BookingCreated(
                event_id=created_event_id(booking_id), item_id=item, customer_id=booker, booking_id=booking_id,
                event_time=booked_at, rental_start=(booked_at + timedelta(days=10)).date(), rental_days=3,
                price_per_day=round(price * rng.uniform(0.8, 1.1), 2),
            ))  # fmt: skip
            if rng.random() < 0.1:
                events.append(BookingCancelled(event_id=cancelled_event_id(booking_id), item_id=item,
                                               customer_id=booker, booking_id=booking_id,
                                               event_time=booked_at + timedelta(seconds=5)))  # fmt: skip
    events.sort(key=lambda e: e.event_time)
    return Traffic(quotes, events)


def merged(t: Traffic) -> list[tuple[datetime, object]]:
    """Quotes and events in one event-time order."""
    return sorted([(q.quoted_at, q) for q in t.quotes] + [(e.event_time, e) for e in t.events], key=lambda p: p[0])


def expected_outcomes(quotes: list[PredictionRecord], events: list, window_s: float) -> dict[str, dict]:
    """Each quote's outcome by the stated rules, by brute force: a booking counted once per event
    id (the first sent wins), the window [quoted_at, quoted_at + window), a cancellation flagged."""
    created, cancelled = {}, set()
    for e in events:
        if isinstance(e, BookingCreated):
            created.setdefault(e.event_id, e)
        else:
            cancelled.add(e.booking_id)
    by_item: dict[str, list[BookingCreated]] = {}
    for e in created.values():
        by_item.setdefault(e.item_id, []).append(e)
    out = {}
    for q in quotes:
        end = q.quoted_at + timedelta(seconds=window_s)
        window = sorted((e for e in by_item.get(q.item_id, ()) if q.quoted_at <= e.event_time < end),
                        key=lambda e: (e.event_time, e.event_id))  # fmt: skip
        mine = [e for e in window if q.customer_id is not None and e.customer_id == q.customer_id]
        out[q.request_id] = {
            "booked": bool(mine), "booking_id": mine[0].booking_id if mine else None,
            "paid_per_day": mine[0].price_per_day if mine else None,
            "cancelled": bool(mine) and mine[0].booking_id in cancelled, "booked_any": bool(window),
            "paid_any_per_day": window[0].price_per_day if window else None,
            "bookings_in_window": len({e.booking_id for e in window}),
        }  # fmt: skip
    return out


# -- throughput ---------------------------------------------------------------------------------
def logged_per_s(tmp: Path, base: Settings, n_quotes: int = 100_000) -> dict:
    """Quotes through the join into the log per second: ``n_quotes`` (and about 0.4 bookings a
    quote) are produced first, then one in-process monitor reads them all, joins them and
    writes its checkpoints (every 5 s), timed from its start to its last checkpoint."""
    from monitoring.log.consumer import Monitor

    world = make_log_world(tmp, base, partitions=6)
    try:
        t = traffic(n_quotes, datetime.now(UTC) - timedelta(days=1), per_s=20.0, items=5_000, customers=20_000)
        producer = world.producer()
        try:
            world.send(producer, t.quotes, t.events)
        finally:
            producer.close()
        settings = world.settings.model_copy(update={"monitor_checkpoint_every_s": 5.0})
        started = time.perf_counter()
        monitor = Monitor(settings)
        monitor.run(until_idle=1.0)
        elapsed = time.perf_counter() - started - 1.0  # less the quiet second that ended the run
        logged = monitor.counters["quotes_logged"]
        return {"quotes": n_quotes, "logged": logged, "outcomes": monitor.counters["outcomes_logged"],
                "bookings": len(t.events), "seconds": round(elapsed, 2), "logged_per_s": round(logged / elapsed)}  # fmt: skip
    finally:
        world.remove_topics()
