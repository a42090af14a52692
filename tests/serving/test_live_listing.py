"""An item listed on the items topic while the service runs is quoted over HTTP, without a restart
of the service or the stream: the items stage writes its attributes where the service reads them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import date

import pytest

from rental.servers.topics import admin_client, ensure_topics
from streaming.catalogue.listing import Listing
from streaming.catalogue.publish import publish
from tests.serving.test_service import body
from tests.worlds.stream_world import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_an_item_listed_live_is_quoted_over_http_without_a_restart(world, served, http):
    s = world.settings
    item = f"item_live_{uuid.uuid4().hex[:8]}"
    assert http.post("/predict", json=body(item)).status_code == 404
    with admin_client(s.bootstrap_servers) as admin:
        ensure_topics(admin, {s.topic_items: (s.items_partitions, -1)}, compacted={s.topic_items})
    log = open(s.data_dir / "consumer-listing.log", "w")  # noqa: SIM115
    consumer = subprocess.Popen([sys.executable, "-m", "rental.cli", "stream", "features", "--stages", "items",
                                 "--quiet"], env={**os.environ, **world.env}, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        publish(s, [Listing(item_id=item, brand="Live Label", brand_tier="luxury", category="gown",
                            retail_price=2_400.0, condition="new", listing_date=date.today())])  # fmt: skip
        quote = wait_for(lambda: (a := http.post("/predict", json=body(item))).status_code == 200 and a.json(), 90,
                         "the listed item quoted")  # fmt: skip
    finally:
        consumer.terminate()
        consumer.wait(timeout=60)
        with admin_client(s) as admin:
            admin.delete_topics([s.topic_items], raise_errors=False)
    assert quote["cold_start"] is True and quote["price_per_day"] > 0 and quote["degraded"] is False
    assert consumer.returncode == 0, (s.data_dir / "consumer-listing.log").read_text()[-3_000:]
