"""Online features for a quote: the model's Feast feature service, read from Redis.

Costs that matter per request ("Measured facts" in docs/architecture.md): the ``FeatureService``
and its views are fetched from Feast's registry once per name (fetching them per request costs
~5 ms), and the rows are read with ``OnlineReader``, which gives what ``get_online_features``
gives for a tenth of its CPU.
The category entity key is the item's category, a static attribute: it is remembered per item
so one read answers a quote; the first quote of an item (or one whose category changed) reads again with
the category the item's own row names, so the remembered value is never trusted blindly.

Redis answers within ``serve_redis_timeout_s`` or counts as down, and is never retried with
backoff (redis-py's default waits seconds). While it is down, an item quoted before is priced
from its last-known item and category features, flagged ``degraded``; any other item raises
``FeaturesUnavailable``. redis-py reconnects on the next call, so recovery needs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from feast import FeatureStore
from feast.errors import FeatureServiceNotFoundException
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from rental.settings import Settings
from streaming.feature_store import FEATURE_REPO, OnlineReader, as_of, repo_config

CATEGORY_KEY = "category"  # the category entity's join key ...
CATEGORY_FEATURE = "item_category"  # ... is this item attribute (the backfill and the consumer key it so)


class FeaturesUnavailable(RuntimeError):
    """The online store cannot be read and there is nothing last-known to price from."""


@dataclass(frozen=True)
class Layout:
    """Which of a feature service's features say what about an item. Static item views (ttl 0,
    e.g. item_attributes) exist for every catalogue item: none found means an unknown item.
    Windowed item views (item_popularity) exist once an item has been booked: none found means
    a cold start. Item and category features are what a Redis outage falls back on."""

    reader: OnlineReader  # the service's features, read in Feast's Redis layout
    static_item: tuple[str, ...]  # view names
    windowed_item: tuple[str, ...]  # view names
    windowed_features: tuple[str, ...]
    fallback: tuple[str, ...]  # item and category features, kept last-known per item


@dataclass
class Fetched:
    columns: dict[str, list]  # Feast's to_dict(): feature name -> one value per row
    known: list[bool]
    cold_start: list[bool]
    as_of: list[datetime | None]  # the newest feature row used
    degraded: list[bool]


class OnlineFeatures:
    def __init__(self, settings: Settings):
        config = repo_config(settings)
        timeout = settings.serve_redis_timeout_s
        config.online_store.connection_string += f",socket_timeout={timeout},socket_connect_timeout={timeout}"
        (settings.data_dir / "feast").mkdir(parents=True, exist_ok=True)
        self.store = FeatureStore(repo_path=str(FEATURE_REPO), config=config)
        # Feast builds its redis-py client lazily; build it now to replace the default retry policy.
        self.redis = self.store._get_provider().online_store._get_client(config.online_store)
        self.redis.set_retry(Retry(NoBackoff(), 1))  # one immediate reconnect, as after a Redis restart
        self._layouts: dict[str, Layout] = {}
        self._category: dict[str, str] = {}
        self._last: dict[str, tuple[dict, datetime | None]] = {}
        self._last_cap = settings.serve_fallback_items

    def layout(self, service_name: str) -> Layout:
        """The feature service and its layout, read from the registry once per name."""
        found = self._layouts.get(service_name)
        if found is None:
            try:
                service = self.store.get_feature_service(service_name)
            except FeatureServiceNotFoundException:
                raise FeaturesUnavailable(f"feature service {service_name!r} is not in the Feast registry") from None
            static, windowed, windowed_features, fallback = [], [], [], []
            for projection in service.feature_view_projections:
                view = self.store.get_feature_view(projection.name)
                names = [f.name for f in projection.features]
                if "item_id" in view.join_keys:
                    (windowed if view.ttl else static).append(view.name)
                    windowed_features.extend(names if view.ttl else [])
                    fallback.extend(names)
                elif CATEGORY_KEY in view.join_keys:
                    fallback.extend(names)
            reader = OnlineReader(self.store, self.redis, service)
            found = self._layouts[service_name] = Layout(reader, tuple(static), tuple(windowed),
                                                         tuple(windowed_features), tuple(fallback))  # fmt: skip
        return found

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except (RedisError, OSError):
            return False

    def fetch(self, service_name: str, items: list[str], customers: list[str | None]) -> Fetched:
        layout = self.layout(service_name)
        rows = [
            {"item_id": item, "customer_id": customer or "", CATEGORY_KEY: self._category.get(item, "")}
            for item, customer in zip(items, customers, strict=True)
        ]
        try:
            fetched = self._read(layout, rows)
            stale = [k for k, row in enumerate(rows) if self._learn_category(row, fetched.columns, k)]
            if stale:  # first sight of these items: read again with their category
                again = self._read(layout, [rows[k] for k in stale])
                for j, k in enumerate(stale):
                    for name, values in fetched.columns.items():
                        values[k] = again.columns[name][j]
                    fetched.as_of[k], fetched.known[k] = again.as_of[j], again.known[j]
                    fetched.cold_start[k] = again.cold_start[j]
        except (RedisError, OSError) as exc:
            return self._last_known(layout, items, exc)
        self._remember(layout, items, fetched)
        return fetched

    def _read(self, layout: Layout, rows: list[dict]) -> Fetched:
        read = layout.reader.read(rows)
        n, stamps = len(rows), read.stamps
        known = [any(stamps[v][k] > 0 for v in layout.static_item) for k in range(n)]
        cold = [not any(stamps[v][k] > 0 for v in layout.windowed_item) for k in range(n)]
        return Fetched(read.columns, known, cold, as_of(stamps, n), [False] * n)

    def _learn_category(self, row: dict, columns: dict[str, list], k: int) -> bool:
        """Remember the item's category; True if this row was read with another one."""
        values = columns.get(CATEGORY_FEATURE)
        category = values[k] if values else None
        if category is None or category == row[CATEGORY_KEY]:
            return False
        self._category[row["item_id"]] = row[CATEGORY_KEY] = category
        return True

    def _remember(self, layout: Layout, items: list[str], fetched: Fetched) -> None:
        if not self._last_cap:
            return
        last = self._last
        for k, item in enumerate(items):
            if fetched.known[k]:
                last.pop(item, None)  # re-inserted last: the dict's order is least recently quoted first
                last[item] = ({name: fetched.columns[name][k] for name in layout.fallback}, fetched.as_of[k])
        while len(last) > self._last_cap:
            del last[next(iter(last))]

    def _last_known(self, layout: Layout, items: list[str], error: Exception) -> Fetched:
        missing = [item for item in items if item not in self._last]
        if missing:
            raise FeaturesUnavailable(
                f"the online feature store (Redis) is unavailable ({type(error).__name__}) and "
                f"{len(missing)} of the items were never quoted before (e.g. {missing[0]!r})"
            ) from None
        rows = [self._last[item] for item in items]
        columns = {name: [row[0].get(name) for row in rows] for name in layout.fallback}
        cold = [not any(row[0].get(f) is not None for f in layout.windowed_features) for row in rows]
        n = len(items)
        return Fetched(columns, [True] * n, cold, [row[1] for row in rows], [True] * n)
