"""A real single-node Apache Kafka broker (KRaft) for local work, tests and CI.

No broker is packaged for Debian or PyPI, so the pinned release's jars are fetched once from
Maven Central with ``mvn`` (see ``kafka/pom.xml``) into ``settings.kafka_lib_dir`` and run with
``java``. Its storage lives under ``settings.kafka_dir`` and is formatted only once, so a restart
keeps topics, data and committed offsets. With ``KAFKA_BOOTSTRAP_SERVERS`` set nothing is
started: that broker is only checked and given the project's topics.
"""

from __future__ import annotations

import base64
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from rental.connections import kafka_options, mask_url
from rental.servers.lifecycle import LocalServer, Say, ServerFiles, ServiceError, port_in_use, quiet
from rental.servers.topics import admin_client, ensure_topics, project_topics
from rental.settings import Settings, get_settings

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
PROBE_TOPIC = "_rental.services.probe"
_FETCH_MARKER = ".fetched"


# ---------------------------------------------------------------------------- jars


def jars_fetched(s: Settings | None = None) -> bool:
    s = s or get_settings()
    return (s.kafka_lib_dir.parent / _FETCH_MARKER).exists()


def fetch_jars(s: Settings | None = None, say: Say = quiet) -> Path:
    """Copy the pinned broker jars into the cache once; later calls are free (marker file)."""
    s = s or get_settings()
    lib = s.kafka_lib_dir
    if jars_fetched(s):
        return lib
    mvn = shutil.which(s.mvn_bin)
    if mvn is None:
        raise ServiceError(
            f"Maven ('{s.mvn_bin}') is needed once to fetch the Kafka {s.kafka_version} jars: "
            "apt-get install -y maven (or set KAFKA_BOOTSTRAP_SERVERS to use another broker)."
        )
    say(f"fetching Apache Kafka {s.kafka_version} (Scala {s.kafka_scala_version}) jars into {lib}")
    staging = lib.with_name(lib.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    argv = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-Dkafka.version={s.kafka_version}",
        f"-Dscala.binary.version={s.kafka_scala_version}",
        f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0 or not any(staging.glob("kafka_*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ServiceError(
            f"mvn could not fetch Kafka {s.kafka_version} (RENTAL_KAFKA_VERSION); is it on Maven Central?\n{output}"
        )
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    (lib.parent / _FETCH_MARKER).write_text(f"{s.kafka_scala_version}-{s.kafka_version}\n")
    return lib


# ---------------------------------------------------------------------------- the broker


def probe(settings: Settings, timeout_s: float = 20.0) -> None:
    """Round-trip one message through a probe topic: proves metadata, produce and fetch work
    (and, on a secured broker, that the settings' credentials are accepted)."""
    with admin_client(settings, timeout_s) as admin:
        ensure_topics(admin, {PROBE_TOPIC: (1, 3600 * 1000)}, timeout_s)
    token = uuid.uuid4().hex.encode()
    options = kafka_options(settings) | {"bootstrap_timeout_ms": int(timeout_s * 1000)}
    producer = KafkaProducer(**options, acks="all")
    try:
        offset = producer.send(PROBE_TOPIC, token).get(timeout=timeout_s).offset
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(**options, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(PROBE_TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500).get(tp, []):
                if record.value == token:
                    return
        raise ServiceError(f"Kafka at {settings.bootstrap_servers} accepted a probe message but did not return it")
    finally:
        consumer.close()


def _new_cluster_id() -> str:
    while True:  # Kafka's own rule: a base64url uuid that does not start with '-'
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaServer(LocalServer):
    """The broker: its config is ``server.properties`` (plus a log4j file), its storage is formatted
    once, and it is ready when a probe message makes the round trip; once up it gets the topics."""

    name = "kafka"
    title = "the Kafka broker"
    noun = "broker"
    external_env = "KAFKA_BOOTSTRAP_SERVERS"
    start_timeout_env = "RENTAL_KAFKA_START_TIMEOUT_S"
    poll_s = 0.5

    def __init__(self, settings: Settings | None = None) -> None:
        self.s = s = settings or get_settings()
        root = s.kafka_dir
        self.files = ServerFiles(
            root=root,
            config=root / "server.properties",
            pid=root / "kafka.pid",
            log=root / "logs" / "server.log",
            stdout=root / "logs" / "kafka.out",
        )
        self.log4j = root / "log4j2.properties"
        self.cluster_id = root / "cluster-id"
        self.host, self.address, self.is_external = s.kafka_host, mask_url(s.bootstrap_servers), s.kafka_is_external
        self.start_timeout_s, self.stop_timeout_s = s.kafka_start_timeout_s, s.kafka_stop_timeout_s

    def ports(self) -> list[tuple[int, str]]:
        return [
            (self.s.kafka_port, "RENTAL_KAFKA_PORT"),
            (self.s.kafka_controller_port, "RENTAL_KAFKA_CONTROLLER_PORT"),
        ]

    def external_example(self, port: int) -> str:
        return f"{self.host}:{port}"

    def check_installed(self) -> None:
        s = self.s
        if not jars_fetched(s):
            raise ServiceError(
                f"the Kafka {s.kafka_version} jars are not installed in {s.kafka_lib_dir}: "
                "run `rental services install` once (fetches them with mvn)"
            )

    listener_protocol = "PLAINTEXT"  # what the broker's client listener speaks

    def start(self, say: Say = quiet) -> bool:
        if not self.is_external and self.s.kafka_security_protocol != self.listener_protocol:
            raise ServiceError(
                f"kafka: the local broker listens with {self.listener_protocol} only, but "
                f"RENTAL_KAFKA_SECURITY_PROTOCOL={self.s.kafka_security_protocol}: name the secured cluster "
                "with KAFKA_BOOTSTRAP_SERVERS, or unset the RENTAL_KAFKA_SASL_* and RENTAL_KAFKA_SSL_* settings"
            )
        return super().start(say)

    def properties(self) -> dict[str, str]:
        """The broker's ``server.properties``: one PLAINTEXT listener on loopback."""
        s, host = self.s, self.s.kafka_host
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://{host}:{s.kafka_port},CONTROLLER://{host}:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.files.data),
            "num.partitions": "3",  # only for auto-created topics; ours come from settings.topic_specs()
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": str(s.kafka_auto_create_topics).lower(),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",  # 50 by default: slow first group join on 2 cores
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.check.interval.ms": "300000",
            "delete.topic.enable": "true",
        }

    def format_args(self) -> list[str]:
        """What formatting the storage adds to it (SCRAM users, for a broker that asks for them)."""
        return []

    def render_config(self) -> str:
        props = self.properties()
        header = "# Generated by rental/servers/kafka.py from rental/settings.py; edits are overwritten.\n"
        return header + "".join(f"{key}={value}\n" for key, value in props.items())

    def _log4j_properties(self) -> str:
        log = self.files.log
        return f"""# Generated by rental/servers/kafka.py: the broker logs to {log}.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""

    def write_config(self) -> Path:
        config = super().write_config()
        self.log4j.write_text(self._log4j_properties())
        return config

    def _java(self) -> str:
        java = shutil.which(self.s.java_bin)
        if java is None:
            raise ServiceError(
                f"Java 17+ ('{self.s.java_bin}') is needed to run Kafka: apt-get install -y openjdk-17-jre-headless"
            )
        return java

    def _jvm_argv(self, main: str, *args: str) -> list[str]:
        s = self.s
        return [
            self._java(), *shlex.split(s.kafka_heap),
            "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j}",
            f"-Dkafka.logs.dir={self.files.log.parent}",
            "-cp", f"{s.kafka_lib_dir}/*",
            main, *args,
        ]  # fmt: skip

    def prepare(self, say: Say) -> None:
        """Format KRaft storage on first start only, so a restart keeps topics, data and offsets."""
        data = self.files.data
        if (data / "meta.properties").exists():
            return
        if not self.cluster_id.exists():
            self.cluster_id.write_text(_new_cluster_id() + "\n")
        cluster_id = self.cluster_id.read_text().strip()
        argv = self._jvm_argv(
            "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.files.config), *self.format_args()
        )
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceError(f"formatting Kafka storage in {data} failed:\n{(done.stdout + done.stderr).strip()}")
        say(f"kafka: formatted new KRaft storage in {data}")

    def argv(self) -> list[str]:
        return self._jvm_argv("kafka.Kafka", str(self.files.config))

    def starting_line(self, pid: int) -> str:
        return f"kafka: starting broker {self.s.kafka_version} at {self.address} (pid {pid}), log {self.files.log}"

    def exit_hint(self) -> str:
        return f" (JVM output: {self.files.stdout})"

    def not_ready(self, pid: int, budget_s: float) -> str | None:
        if not port_in_use(self.s.kafka_host, self.s.kafka_port):
            return "port not open yet"
        try:
            probe(self.s, timeout_s=min(20.0, max(1.0, budget_s)))
        except (KafkaError, ServiceError) as exc:
            return str(exc) or repr(exc)
        return None

    def provision(self) -> list[str]:
        """The project's topics, created or repaired; also the check of an external broker."""
        with admin_client(self.s) as admin:
            specs, compacted = project_topics(self.s)  # the live catalogue's topic is compacted
            actions = ensure_topics(admin, specs, compacted=compacted)
        kept = [a[3:] for a in actions if a.startswith("ok ")]
        lines = [f"kafka: topic {a}" for a in actions if not a.startswith("ok ")]
        return lines + ([f"kafka: topics already in place: {', '.join(kept)}"] if kept else [])

    def external_reachable(self) -> bool:
        try:
            with admin_client(self.s, timeout_s=3) as admin:
                admin.list_topics()
        except (ServiceError, KafkaError):
            return False
        return True
