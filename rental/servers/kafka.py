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

from rental.servers.lifecycle import (
    Say,
    ServiceError,
    ServiceStatus,
    file_lock,
    live_pid,
    log_tail,
    pid_alive,
    port_in_use,
    port_taken_error,
    quiet,
    spawn_detached,
    stop_started,
    terminate,
)
from rental.servers.topics import admin_client, ensure_topics
from rental.settings import Settings, get_settings

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
PROBE_TOPIC = "_rental.services.probe"
_FETCH_MARKER = ".fetched"


# ---------------------------------------------------------------------------- paths


def _paths(s: Settings) -> dict[str, Path]:
    root = s.kafka_dir
    return {
        "root": root,
        "data": root / "data",
        "config": root / "server.properties",
        "log4j": root / "log4j2.properties",
        "cluster_id": root / "cluster-id",
        "pid": root / "kafka.pid",
        "log": root / "logs" / "server.log",
        "stdout": root / "logs" / "kafka.out",
        "lock": root / ".lock",
    }


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


# ---------------------------------------------------------------------------- config


def _server_properties(s: Settings, p: dict[str, Path]) -> str:
    host = s.kafka_host
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{s.kafka_controller_port}",
        "listeners": f"PLAINTEXT://{host}:{s.kafka_port},CONTROLLER://{host}:{s.kafka_controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{s.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(p["data"]),
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
    header = "# Generated by rental/servers/kafka.py from rental/settings.py; edits are overwritten.\n"
    return header + "".join(f"{key}={value}\n" for key, value in props.items())


def _log4j_properties(p: dict[str, Path]) -> str:
    log = p["log"]
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


def write_config(s: Settings | None = None) -> Path:
    s = s or get_settings()
    p = _paths(s)
    for folder in (p["root"], p["data"], p["log"].parent):
        folder.mkdir(parents=True, exist_ok=True)
    p["config"].write_text(_server_properties(s, p))
    p["log4j"].write_text(_log4j_properties(p))
    return p["config"]


def _new_cluster_id() -> str:
    while True:  # Kafka's own rule: a base64url uuid that does not start with '-'
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _java(s: Settings) -> str:
    java = shutil.which(s.java_bin)
    if java is None:
        raise ServiceError(
            f"Java 17+ ('{s.java_bin}') is needed to run Kafka: apt-get install -y openjdk-17-jre-headless"
        )
    return java


def _jvm_argv(s: Settings, p: dict[str, Path], main: str, *args: str) -> list[str]:
    return [
        _java(s), *shlex.split(s.kafka_heap),
        "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={p['log4j']}",
        f"-Dkafka.logs.dir={p['log'].parent}",
        "-cp", f"{s.kafka_lib_dir}/*",
        main, *args,
    ]  # fmt: skip


def format_storage(s: Settings, p: dict[str, Path]) -> bool:
    """Format KRaft storage on first start only; the cluster id is kept in a file."""
    if (p["data"] / "meta.properties").exists():
        return False
    if not p["cluster_id"].exists():
        p["cluster_id"].write_text(_new_cluster_id() + "\n")
    cluster_id = p["cluster_id"].read_text().strip()
    argv = _jvm_argv(s, p, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(p["config"]))
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise ServiceError(f"formatting Kafka storage in {p['data']} failed:\n{(done.stdout + done.stderr).strip()}")
    return True


# ---------------------------------------------------------------------------- lifecycle


def running_pid(s: Settings | None = None) -> int | None:
    """Pid of the broker this project started, if it runs."""
    s = s or get_settings()
    p = _paths(s)
    return live_pid(p["pid"], str(p["config"]))


def probe(bootstrap_servers: str, timeout_s: float = 20.0) -> None:
    """Round-trip one message through a probe topic: proves metadata, produce and fetch work."""
    with admin_client(bootstrap_servers, timeout_s) as admin:
        ensure_topics(admin, {PROBE_TOPIC: (1, 3600 * 1000)}, timeout_s)
    token = uuid.uuid4().hex.encode()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", bootstrap_timeout_ms=int(timeout_s * 1000)
    )
    try:
        offset = producer.send(PROBE_TOPIC, token).get(timeout=timeout_s).offset
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )  # fmt: skip
    try:
        tp = TopicPartition(PROBE_TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500).get(tp, []):
                if record.value == token:
                    return
        raise ServiceError(f"Kafka at {bootstrap_servers} accepted a probe message but did not return it")
    finally:
        consumer.close()


def _wait_ready(s: Settings, p: dict[str, Path], pid: int) -> None:
    deadline = time.monotonic() + s.kafka_start_timeout_s
    last_error = "port not open yet"
    while time.monotonic() < deadline:
        # The child we just started is watched by pid alone: its command line is no guide while
        # it starts (Redis rewrites its process title, leaving /proc/<pid>/cmdline briefly empty).
        if not pid_alive(pid):
            raise ServiceError(
                f"the Kafka broker exited during start-up. Log: {p['log']} (JVM output: {p['stdout']})\n"
                f"{log_tail(p['stdout'])}\n{log_tail(p['log'])}"
            )
        if port_in_use(s.kafka_host, s.kafka_port):
            try:
                probe(s.bootstrap_servers, timeout_s=min(20.0, max(1.0, deadline - time.monotonic())))
                return
            except (KafkaError, ServiceError) as exc:
                last_error = str(exc) or repr(exc)
        time.sleep(0.5)
    raise ServiceError(
        f"the Kafka broker (pid {pid}) was not ready within {s.kafka_start_timeout_s:.0f}s "
        f"(RENTAL_KAFKA_START_TIMEOUT_S); last error: {last_error}\n  log: {p['log']}\n{log_tail(p['log'])}"
    )


def start(s: Settings | None = None, say: Say = quiet) -> bool:
    """Start the local broker (or check the external one) and ensure topics.

    Returns True only if this call started a broker, so callers can stop just what they started.
    """
    s = s or get_settings()
    if s.kafka_is_external:
        try:
            with admin_client(s.bootstrap_servers) as admin:
                actions = ensure_topics(admin, s.topic_specs())
        except ServiceError as exc:
            raise ServiceError(f"{exc} (set by KAFKA_BOOTSTRAP_SERVERS)") from None
        say(f"kafka: using external broker {s.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)")
        _report(actions, say)
        return False
    p = _paths(s)
    p["root"].mkdir(parents=True, exist_ok=True)
    with file_lock(p["lock"]):
        pid = running_pid(s)
        if pid is not None:
            if p["config"].read_text() != _server_properties(s, p):
                raise ServiceError(
                    f"kafka: our broker (pid {pid}) runs with other settings than the current ones "
                    f"(see {p['config']}); restart it: rental services down kafka && rental services up kafka"
                )
            say(f"kafka: already running at {s.bootstrap_servers} (pid {pid})")
            started = False
        else:
            for port, env in (
                (s.kafka_port, "RENTAL_KAFKA_PORT"),
                (s.kafka_controller_port, "RENTAL_KAFKA_CONTROLLER_PORT"),
            ):
                if port_in_use(s.kafka_host, port):
                    raise port_taken_error(
                        "kafka", s.kafka_host, port, env, "KAFKA_BOOTSTRAP_SERVERS", f"{s.kafka_host}:{port}"
                    )
            if not jars_fetched(s):  # downloads happen in the install step only, never at run time
                raise ServiceError(
                    f"the Kafka {s.kafka_version} jars are not installed in {s.kafka_lib_dir}: "
                    "run `rental services install` once (fetches them with mvn)"
                )
            write_config(s)
            if format_storage(s, p):
                say(f"kafka: formatted new KRaft storage in {p['data']}")
            argv = _jvm_argv(s, p, "kafka.Kafka", str(p["config"]))
            pid = spawn_detached(argv, p["stdout"], cwd=p["root"])
            p["pid"].write_text(f"{pid}\n")
            say(f"kafka: starting broker {s.kafka_version} at {s.bootstrap_servers} (pid {pid}), log {p['log']}")
            started = True
        try:
            _wait_ready(s, p, pid)
        except ServiceError:
            if started:
                terminate(pid, s.kafka_stop_timeout_s)
                p["pid"].unlink(missing_ok=True)
            raise
    with admin_client(s.bootstrap_servers) as admin:
        _report(ensure_topics(admin, s.topic_specs()), say)
    if started:
        say(f"kafka: ready at {s.bootstrap_servers}")
    return started


def stop(s: Settings | None = None, say: Say = quiet) -> bool:
    """Stop the broker this project started (never an external one). True if one was stopped."""
    s = s or get_settings()
    if s.kafka_is_external:
        say(f"kafka: external broker {s.bootstrap_servers} left alone")
        return False
    p = _paths(s)
    return stop_started("kafka", p["lock"], p["pid"], lambda: running_pid(s), s.kafka_stop_timeout_s, say)


def status(s: Settings | None = None) -> ServiceStatus:
    s = s or get_settings()
    if s.kafka_is_external:
        try:
            with admin_client(s.bootstrap_servers, timeout_s=3) as admin:
                admin.list_topics()
            state = "reachable"
        except (ServiceError, KafkaError):
            state = "unreachable"
        return ServiceStatus("kafka", s.bootstrap_servers, None, state, "external")
    pid = running_pid(s)
    if pid is None:
        return ServiceStatus("kafka", s.bootstrap_servers, None, "stopped", "-")
    return ServiceStatus("kafka", s.bootstrap_servers, pid, "running", "started by us")


def _report(actions: list[str], say: Say) -> None:
    changed = [a for a in actions if not a.startswith("ok ")]
    kept = [a[3:] for a in actions if a.startswith("ok ")]
    for action in changed:
        say(f"kafka: topic {action}")
    if kept:
        say(f"kafka: topics already in place: {', '.join(kept)}")
