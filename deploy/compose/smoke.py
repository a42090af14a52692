"""`make compose-smoke`: the compose stack up, one booking followed through it, and down again.

Builds or pulls the images (build_images.py), brings docker-compose.yml up under a project of its
own (`docker compose` v2 where present, else Debian's `docker-compose` 1.29; RENTAL_COMPOSE_COMMAND
chooses), waits for the one-shot services to finish and the healthchecks to pass, then from the
host: quotes an item over HTTP and gRPC, produces bookings of it into the compose Kafka (its
published loopback port), sees the item's popularity move in the compose Redis (read through
Feast in the feature consumer's container) and the next quote's features_as_of move, sees the
quotes in the monitor's prediction log (its volume) and both scrape targets up in Prometheus.
Then `down -v`, whatever happened (`--keep` leaves the stack up to look at).

Host ports default to ones beside the shared local Kafka and Redis (docker-compose.yml lists the
RENTAL_COMPOSE_*_PORT settings); secrets are made up for the run. A service whose image is
missing (Grafana, where no registry answers) is left out and named. Prints one JSON line: each
step's seconds, the images, what was seen.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))  # the project's modules, run as a script from the virtualenv
COMPOSE_FILE = REPO / "docker-compose.yml"

from deploy.compose.build_images import resolve  # noqa: E402

PORTS = {"KAFKA": 19092, "REDIS": 16379, "HTTP": 13000, "GRPC": 15051, "MLFLOW": 15000, "PREFECT": 14200,
         "PROMETHEUS": 19090, "GRAFANA": 13001}  # fmt: skip
# A small history keeps the first training short; the defaults of docker-compose.yml are make demo's.
SMOKE_ENV = {
    "RENTAL_COMPOSE_ITEMS": "400",
    "RENTAL_COMPOSE_BOOKINGS": "20000",
    "RENTAL_MONITOR_CHECKPOINT_EVERY_S": "5",
    "RENTAL_COMPOSE_CHECK_EVERY_S": "30",
    "RENTAL_SERVE_WORKERS": "1",
}
POPULARITY = ["item_popularity:bookings_7d", "item_popularity:bookings_30d"]

# Run inside the containers with the project's code (python -c): each prints one JSON line.
ITEM_CODE = """
import json
from rental.demo.stream import watched_item
from rental.settings import get_settings
_, _, item, customer = watched_item(get_settings(), busiest_share=0.8)
print(json.dumps({"item_id": item, "customer_id": customer}))
"""
FEATURES_CODE = """
import json, sys, time
from rental.settings import get_settings
from streaming.feature_store.store import feature_store
item, before, timeout, names = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), sys.argv[4].split(",")
store, deadline = feature_store(get_settings()), time.monotonic() + timeout
while True:
    values = store.get_online_features(features=names, entity_rows=[{"item_id": item}]).to_dict()
    now = {k: v[0] for k, v in values.items() if k != "item_id"}
    if now != before or time.monotonic() > deadline:
        break
    time.sleep(1)
print(json.dumps(now, default=str))
"""
MONITOR_CODE = """
import json, sys, time
from monitoring.log import read_quotes
from rental.settings import get_settings
wanted, timeout = set(sys.argv[1].split(",")), float(sys.argv[2])
deadline = time.monotonic() + timeout
while True:
    quotes = read_quotes(get_settings())
    seen = sorted(wanted & set(quotes["request_id"])) if len(quotes) else []
    if len(seen) == len(wanted) or time.monotonic() > deadline:
        break
    time.sleep(2)
print(json.dumps({"logged": seen, "quotes_in_log": len(quotes)}))
"""


class SmokeError(RuntimeError):
    pass


def compose_command() -> list[str]:
    chosen = os.environ.get("RENTAL_COMPOSE_COMMAND")
    if chosen:
        return chosen.split()
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise SmokeError("neither `docker compose` (v2) nor `docker-compose` (v1) is installed: make compose-images")


class Stack:
    """One compose project of docker-compose.yml, run with the smoke's environment."""

    def __init__(self, project: str, env: dict[str, str]):
        self.command = [*compose_command(), "-f", str(COMPOSE_FILE), "-p", project]
        self.env = env
        self.services: dict = yaml.safe_load(COMPOSE_FILE.read_text())["services"]

    def run(self, *args: str, check: bool = True, capture: bool = False, timeout: float | None = None) -> str:
        done = subprocess.run([*self.command, *args], cwd=REPO, env=self.env, text=True, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None)  # fmt: skip
        if check and done.returncode != 0:
            raise SmokeError(f"{' '.join(args[:2])} failed ({done.returncode}): {(done.stderr or '')[-2000:]}")
        return done.stdout or ""

    def python(self, service: str, code: str, *args: str, timeout: float = 300) -> dict:
        """The project's code run in one of the stack's containers: its last line, as JSON."""
        out = self.run("exec", "-T", service, "python", "-c", code, *args, capture=True, timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def state(self, service: str) -> dict | None:
        ids = self.run("ps", "-q", service, capture=True, check=False).split()
        if not ids:
            return None
        found = subprocess.run(["docker", "inspect", "--format", '{{json .State}} {{.RestartCount}}', ids[0]],
                               capture_output=True, text=True)  # fmt: skip
        if found.returncode != 0:
            return None
        state, restarts = found.stdout.rsplit(" ", 1)
        return json.loads(state) | {"RestartCount": int(restarts)}

    def wait_ready(self, services: list[str], timeout_s: float) -> None:
        """One-shot services exited 0, services with a healthcheck healthy, the rest running."""
        deadline = time.monotonic() + timeout_s
        waiting = list(services)
        while waiting:
            for service in list(waiting):
                state = self.state(service)
                one_shot = self.services[service].get("restart") == "no"
                if state is None:
                    continue
                if one_shot and state["Status"] == "exited":
                    if state["ExitCode"] != 0:
                        raise SmokeError(f"{service} exited {state['ExitCode']}:\n{self.logs(service)}")
                    waiting.remove(service)
                elif not one_shot and (state["Status"] in ("exited", "dead") or state["RestartCount"]):
                    raise SmokeError(f"{service} stopped or restarted ({state['Status']}, exit {state['ExitCode']}, "
                                     f"{state['RestartCount']} restarts):\n{self.logs(service)}")  # fmt: skip
                elif not one_shot and state["Status"] == "running":
                    health = (state.get("Health") or {}).get("Status")
                    if health == "unhealthy":
                        raise SmokeError(f"{service} is unhealthy:\n{self.logs(service)}")
                    if health in (None, "healthy"):
                        waiting.remove(service)
            if waiting and time.monotonic() > deadline:
                raise SmokeError(f"not ready after {timeout_s:.0f} s: {', '.join(waiting)}\n"
                                 + "\n".join(self.logs(s) for s in waiting))  # fmt: skip
            time.sleep(2)

    def failures(self, services: list[str]) -> str:
        """The logs of the services that stopped with an error, are unhealthy or restarting."""
        failed = []
        for service in services:
            state = self.state(service) or {}
            health = (state.get("Health") or {}).get("Status")
            if state.get("ExitCode") or state.get("RestartCount") or health == "unhealthy":
                failed.append(self.logs(service))
        return "\n".join(failed)

    def logs(self, service: str, lines: int = 40) -> str:
        return f"--- {service}\n" + self.run("logs", "--no-color", "--tail", str(lines), service,
                                             capture=True, check=False)  # fmt: skip


PINNED = {"RENTAL_APP_IMAGE": "rental-app:latest", "RENTAL_PRICING_IMAGE": "rental-pricing:latest"}


def pin_project_images(env: dict[str, str], project: str) -> list[str]:
    """The project's images under a tag of this run (another repository, which no build prunes),
    so a rebuild of :latest while the stack runs changes nothing in it."""
    pinned = []
    for variable, image in PINNED.items():
        if variable not in env and image_present(image):
            tag = f"rental-smoke/{image.split(':')[0]}:{project}"
            subprocess.run(["docker", "tag", image, tag], check=True)
            env[variable] = tag
            pinned.append(tag)
    return pinned


def image_present(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def smoke_env() -> tuple[dict[str, str], dict[str, int]]:
    env = dict(os.environ)
    for key, value in SMOKE_ENV.items():
        env.setdefault(key, value)
    ports = {name: int(env.setdefault(f"RENTAL_COMPOSE_{name}_PORT", str(default))) for name, default in PORTS.items()}
    env["REDIS_PASSWORD"] = secrets.token_hex(24)
    env["RENTAL_SERVE_API_TOKENS"] = secrets.token_hex(32)
    env["GRAFANA_ADMIN_PASSWORD"] = secrets.token_hex(16)
    env.pop("COMPOSE_PROJECT_NAME", None)
    return env, ports


def quote(ports: dict[str, int], token: str, request: dict) -> dict:
    http = urllib.request.Request(
        f"http://127.0.0.1:{ports['HTTP']}/predict", data=json.dumps(request).encode(), method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )  # fmt: skip
    with urllib.request.urlopen(http, timeout=10) as answer:
        return json.loads(answer.read())


def quote_grpc(ports: dict[str, int], token: str, request: dict) -> dict:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from bento_service.protos import pricing_pb2, pricing_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{ports['GRPC']}") as channel:
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        answer = stub.Predict(pricing_pb2.PredictRequest(**request), metadata=[("authorization", f"Bearer {token}")],
                              timeout=10)  # fmt: skip
    return MessageToDict(answer, preserving_proto_field_name=True)


def produce_bookings(ports: dict[str, int], item_id: str, customer_id: str, count: int) -> None:
    """Bookings of the item now, as the rental app sends them, into the compose broker from the host."""
    from rental.settings import Settings
    from streaming.events import BookingCreated, encode
    from streaming.producer import make_producer

    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{ports['KAFKA']}")
    producer = make_producer(settings)
    try:
        for _ in range(count):
            now = datetime.now(UTC)
            event = BookingCreated(event_id=f"smoke-{uuid.uuid4().hex}", booking_id=f"smoke-{uuid.uuid4().hex[:12]}",
                                   item_id=item_id, customer_id=customer_id, event_time=now,
                                   rental_start=(now + timedelta(days=7)).date(), rental_days=3, price_per_day=150.0)  # fmt: skip
            producer.send(settings.topic_bookings, key=item_id, value=encode(event)).get(timeout=30)
    finally:
        producer.close(timeout=10)


def prometheus_query(ports: dict[str, int], query: str) -> list[dict]:
    url = f"http://127.0.0.1:{ports['PROMETHEUS']}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())["data"]["result"]


def wait_for(what: str, probe, timeout_s: float, every_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while True:
        with suppress(OSError, urllib.error.URLError, ValueError):
            found = probe()
            if found:
                return found
        if time.monotonic() > deadline:
            raise SmokeError(f"{what}: not seen within {timeout_s:.0f} s")
        time.sleep(every_s)


def follow_a_booking(stack: Stack, ports: dict[str, int], token: str, steps: dict, seen: dict) -> None:
    def timed(name: str):
        steps[name] = round(time.monotonic() - timed.started, 1)
        timed.started = time.monotonic()

    timed.started = time.monotonic()
    item = stack.python("features", ITEM_CODE)
    start = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    request = {"item_id": item["item_id"], "customer_id": item["customer_id"], "rental_start": start, "rental_days": 3}
    names = ",".join(POPULARITY)
    before = stack.python("features", FEATURES_CODE, item["item_id"], "{}", "0", names)
    first = quote(ports, token, request)
    over_grpc = quote_grpc(ports, token, request)
    seen |= {"item": item, "features_before": before, "quote_before": first,
             "grpc_price_per_day": over_grpc.get("price_per_day")}  # fmt: skip
    timed("first_quote_s")

    produce_bookings(ports, item["item_id"], item["customer_id"], count=5)
    timed("produce_s")
    after = stack.python("features", FEATURES_CODE, item["item_id"], json.dumps(before), "180", names, timeout=240)
    if after == before:
        raise SmokeError(f"{item['item_id']}'s features did not move in Redis within 180 s: {after}")
    seen["features_after"] = after
    timed("feature_moved_s")

    def moved():
        answer = quote(ports, token, request)
        changed = (
            answer["features_as_of"] != first["features_as_of"] or answer["price_per_day"] != first["price_per_day"]
        )
        return answer if changed else None

    seen["quote_after"] = wait_for("the next quote's features_as_of or price moving", moved, 120)
    timed("quote_moved_s")

    wanted = [first["request_id"], seen["quote_after"]["request_id"]]
    logged = stack.python("monitor", MONITOR_CODE, ",".join(wanted), "120", timeout=180)
    if sorted(logged["logged"]) != sorted(wanted):
        raise SmokeError(f"the monitor's prediction log holds {logged['logged']} of the quotes {wanted}")
    seen["monitor"] = logged
    timed("quote_in_monitor_s")

    def scraped():
        up = {r["metric"]["job"]: r["value"][1] for r in prometheus_query(ports, 'up{job=~"pricing|monitor"}')}
        latency = prometheus_query(ports, 'bentoml_service_request_duration_seconds_count{endpoint="/predict"}')
        return {"up": up, "predict_latency_series": len(latency)} if up == {"pricing": "1", "monitor": "1"} and latency else None  # fmt: skip

    seen["prometheus"] = wait_for("both scrape targets up and the quote latency in Prometheus", scraped, 90, 5)
    timed("prometheus_s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack up (then: compose -p <project> down -v)")
    parser.add_argument("--project", default=f"rental-smoke-{os.getpid()}", help="compose project name")
    parser.add_argument("--skip-project", action="store_true", help="use rental-app and rental-pricing as they are")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds for the stack to become ready")
    args = parser.parse_args()
    started = time.monotonic()
    steps: dict[str, float] = {}
    seen: dict = {}

    build = [sys.executable, str(HERE / "build_images.py"), *(["--skip-project"] if args.skip_project else [])]
    built = subprocess.run(build, cwd=REPO, check=True,
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    images = json.loads(built.stdout.strip().splitlines()[-1])["images"]
    steps["images_s"] = round(time.monotonic() - started, 1)

    env, ports = smoke_env()
    pinned = pin_project_images(env, args.project)
    stack = Stack(args.project, env)
    services = [name for name, s in stack.services.items() if image_present(resolve(s["image"], env))]
    left_out = sorted(set(stack.services) - set(services))
    result = {"compose": " ".join(stack.command[:-4]), "project": args.project, "left_out": left_out}
    failed = None
    try:
        mark = time.monotonic()
        try:
            stack.run("up", "-d", *services)
        except SmokeError as exc:
            raise SmokeError(f"{exc}\n{stack.failures(services)}") from None
        steps["up_s"] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()
        stack.wait_ready(services, args.ready_timeout)
        steps["ready_s"] = round(time.monotonic() - mark, 1)
        follow_a_booking(stack, ports, env["RENTAL_SERVE_API_TOKENS"], steps, seen)
    except (SmokeError, subprocess.SubprocessError, OSError) as exc:
        failed = str(exc)
    finally:
        if not args.keep:
            mark = time.monotonic()
            stack.run("down", "-v", "--remove-orphans", check=False, capture=True)
            steps["down_s"] = round(time.monotonic() - mark, 1)
            if pinned:
                subprocess.run(["docker", "rmi", *pinned], capture_output=True)  # the tags; :latest keeps the image
    steps["total_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result | {"ok": failed is None, "steps": steps, "images": images, "seen": seen}, default=str))
    if failed:
        print(f"compose smoke failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
