"""A single-node Apache Kafka broker (KRaft, combined broker + controller) on this machine.

The broker is the official ``org.apache.kafka:kafka_2.13`` artifact from Maven Central, resolved by the
machine's Maven into the local Maven cache (``pom.xml`` beside this file) and started with the machine's
Java as ``java -cp <classpath> kafka.Kafka server.properties``. Its data, logs, pid file and trust
material live in one folder (``home``, mode 0700); it listens on 127.0.0.1 only.

Secured as the operators' cluster is (docs/security.md): every listener is TLS — clients ``SASL_SSL`` with
SCRAM-SHA-512 on ``port``, brokers and controllers mutual TLS on ``internal_port`` and ``controller_port``
— with ``StandardAuthorizer``, deny by default, no topic auto-creation and one super user (``admin``).
``up`` makes the CA, the broker certificate and a SCRAM password per principal (:mod:`hub.kafka.pki`),
then creates the SCRAM users and applies the ACLs over the mutual-TLS listener (:mod:`hub.kafka.provision`).

Example::

    broker = LocalBroker(home=Path(".hub/kafka"), port=19092, controller_port=19093)
    broker.up()          # idempotent; returns once a metadata request succeeds
    print(broker.bootstrap)
    broker.down()
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub.deadline import Deadline, DeadlineExceeded
from hub.kafka.clients import KafkaAccess
from hub.kafka.metadata import wait_until_ready
from hub.kafka.pki import BROKER_CN, Pki
from hub.kafka.shape import min_isr_for
from hub.settings import HubSettings

_HERE = Path(__file__).resolve().parent
POM = _HERE / "pom.xml"
LOG4J_CONFIG = _HERE / "log4j2.properties"
TOOLS_LOG4J_CONFIG = _HERE / "log4j2-tools.properties"


class BrokerError(RuntimeError):
    """The local broker could not be resolved, formatted, started or stopped; the message says why."""


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    version: str
    home: Path
    ca_file: Path
    password_file: Path

    def as_dict(self) -> dict[str, object]:
        """What operators' scripts need to connect as the administrator (no secret itself)."""
        return {
            "running": self.running,
            "pid": self.pid,
            "bootstrap": self.bootstrap,
            "version": self.version,
            "home": str(self.home),
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "username": ADMIN,
            "password_file": str(self.password_file),
            "ca_file": str(self.ca_file),
        }


ADMIN = "admin"


class LocalBroker:
    """Resolve, format, start, check and stop one local Kafka broker."""

    def __init__(
        self,
        home: Path,
        *,
        version: str = "4.4.0",
        host: str = "127.0.0.1",
        port: int = 19092,
        controller_port: int = 19093,
        internal_port: int = 19094,
        heap: str = "512m",
        num_partitions: int = 4,
        start_timeout_s: float = 90.0,
        provision: Callable[[KafkaAccess, Pki], None] | None = None,
        plaintext_for_benchmark: bool = False,
        node_id: int = 1,
        voters: dict[int, int] | None = None,
        cluster_id: str | None = None,
        replication: int = 1,
        pki_root: Path | None = None,
    ) -> None:
        self.home = home.resolve()
        self.node_id = node_id
        self.voters = voters or {node_id: controller_port}
        """The KRaft controller quorum: node id → controller port (on ``host``); one node: itself."""
        self.cluster_id = cluster_id
        """Formatted into the storage; a cluster's nodes share one (None: a new random one)."""
        self.replication = replication
        """Replication of the internal topics and default of new topics (a cluster of 3: 3, min ISR 2)."""
        self._pki_root = (pki_root or self.home / "security").resolve()
        self.version = version
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self.internal_port = internal_port
        self.provision = provision
        self.plaintext = plaintext_for_benchmark
        """A broker with no security at all, only for the benchmark's side-by-side measure of what TLS and SCRAM
        cost (``python -m bench``): never started by ``hub kafka up``, the tests or the demo."""
        """Creates the SCRAM users and applies the ACLs, given the super user's mutual-TLS access (defaults
        to :func:`hub.kafka.provision.provision_local` for the default settings)."""
        self.heap = heap
        self.num_partitions = num_partitions
        self.start_timeout_s = start_timeout_s

    # -- paths ---------------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def internal_bootstrap(self) -> str:
        """The brokers' own mutual-TLS listener (used only to provision users and ACLs)."""
        return f"{self.host}:{self.internal_port}"

    @property
    def pki(self) -> Pki:
        return Pki(self._pki_root)

    def admin_access(self) -> KafkaAccess:
        """The super user ``admin`` over SASL_SSL (what ``hub kafka client-config admin`` prints)."""
        if self.plaintext:
            return KafkaAccess(self.bootstrap, security_protocol="PLAINTEXT")
        return self.access_as(ADMIN)

    def access_as(self, principal: str) -> KafkaAccess:
        from pydantic import SecretStr

        return KafkaAccess(self.bootstrap, principal=principal, password=SecretStr(self.pki.ensure_password(principal)),
                           ca_file=self.pki.ca_file)

    def broker_access(self) -> KafkaAccess:
        """The broker's own certificate on the internal listener: a super user before any SCRAM user exists."""
        return KafkaAccess(self.internal_bootstrap, security_protocol="SSL", ca_file=self.pki.ca_file,
                           cert_file=self.pki.broker_pem(self.host))

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def classpath_file(self) -> Path:
        """The resolved classpath, cached per Kafka version and per content of ``pom.xml``."""
        import hashlib

        pom = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
        return self.home / f"classpath-{self.version}-{pom}.txt"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def console_log(self) -> Path:
        return self.logs_dir / "console.log"

    # -- steps ---------------------------------------------------------------------------------------

    def classpath(self) -> str:
        """The broker's classpath, resolved by Maven once per version and cached in ``home``."""
        if self.classpath_file.exists():
            cached = self.classpath_file.read_text().strip()
            if cached and all(Path(p).exists() for p in cached.split(os.pathsep)):
                return cached
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [
            "mvn", "-B", "-q", "-f", str(POM),
            f"-Dkafka.version={self.version}",
            "dependency:build-classpath",
            f"-Dmdep.outputFile={self.classpath_file}",
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except FileNotFoundError as exc:
            raise BrokerError("Maven (mvn) is not installed; it resolves Kafka from Maven Central") from exc
        if done.returncode != 0 or not self.classpath_file.exists():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise BrokerError(f"Maven could not resolve org.apache.kafka:kafka_2.13:{self.version}:\n{tail}")
        return self.classpath_file.read_text().strip()

    def write_properties(self) -> None:
        """Generate ``server.properties`` for a one-node, secured KRaft cluster on loopback."""
        client, internal, controller = (f"{self.host}:{p}" for p in (self.port, self.internal_port,
                                                                       self.controller_port))
        if self.plaintext:
            security = {"listener.security.protocol.map": "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
                        "auto.create.topics.enable": "false"}
        else:
            security = {"listener.security.protocol.map": "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
                        **secured_listener_properties(self.pki.ensure_broker(self.host), self.pki.ca_file)}
        rf, min_isr = str(self.replication), str(min_isr_for(self.replication))
        voters = ",".join(f"{n}@{self.host}:{p}" for n, p in sorted(self.voters.items()))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"CLIENT://{client},INTERNAL://{internal},CONTROLLER://{controller}",
            "advertised.listeners": f"CLIENT://{client},INTERNAL://{internal}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "INTERNAL",
            **security,
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.num_partitions),
            # One node: internal topics must have replication factor 1 so transactions and groups work; a
            # cluster of three replicates everything three times and acknowledges acks=all writes on two.
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        _write_private(self.properties_file, "".join(f"{k}={v}\n" for k, v in props.items()))

    def _java(self, classpath: str, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java", f"-Xmx{heap}", "-Xms64m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp", classpath, main, *args,
        ]  # fmt: skip

    def format_storage(self, classpath: str) -> None:
        """Format the storage directory once (KRaft needs a cluster id before first start)."""
        if (self.data_dir / "meta.properties").exists():
            return
        # A cluster id may start with "-": pass it as --cluster-id=<id> so it is never read as an option.
        cluster_id = self.cluster_id or new_cluster_id()
        cmd = self._java(
            classpath, "kafka.tools.StorageTool",
            "format", f"--cluster-id={cluster_id}", "-c", str(self.properties_file), "--ignore-formatted",
        )  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{done.stdout}{done.stderr}")

    def pid(self) -> int | None:
        """The pid of our running broker, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _is_our_java(pid, self.properties_file):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def up(self) -> str:
        """Start the broker unless it runs already; return the bootstrap address once it answers."""
        if self.pid() is not None:
            wait_until_ready(self.admin_access(), Deadline(self.start_timeout_s, f"Kafka at {self.bootstrap}"))
            return self.bootstrap
        if (self.data_dir / "meta.properties").exists() and not self.pki.ca_file.exists() and not self.plaintext:
            raise BrokerError(f"{self.data_dir} holds a broker formatted before the broker was secured; remove "
                              f"{self.home} (its data is local test data) and run `hub kafka up` again")
        proc = self.launch(self.classpath())
        try:
            deadline = Deadline(self.start_timeout_s, f"Kafka at {self.bootstrap}")
            if not self.plaintext:
                wait_until_ready(self.broker_access(), deadline, alive=lambda: proc.poll() is None)
                self._provision()
            wait_until_ready(self.admin_access(), deadline, alive=lambda: proc.poll() is None)
        except (RuntimeError, DeadlineExceeded) as exc:
            self._kill(proc.pid)
            self.pid_file.unlink(missing_ok=True)
            raise BrokerError(f"Kafka did not start: {exc}\n--- last lines of the broker's log ---\n"
                              f"{self.failure_report(40)}") from exc
        return self.bootstrap

    def launch(self, classpath: str) -> subprocess.Popen[bytes]:
        """Format the storage (once) and start the node's java process; return at once (not yet ready)."""
        for d in (self.home, self.data_dir, self.logs_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)  # broker data and logs are not world-readable
        self.write_properties()
        self.format_storage(classpath)
        cmd = self._java(classpath, "kafka.Kafka", str(self.properties_file), heap=self.heap)
        with self.console_log.open("ab") as console:
            proc = subprocess.Popen(
                cmd, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.home,
            )  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
        return proc

    def kill(self) -> bool:
        """kill -9 the node (a crash, for fault tests); True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        self._kill(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _provision(self) -> None:
        if self.provision is not None:
            self.provision(self.broker_access(), self.pki)
            return
        from hub.kafka.provision import provision_local
        from hub.settings import HubSettings

        provision_local(self.broker_access(), self.pki, HubSettings())

    def down(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout_s``); True if one was running."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            Deadline(timeout_s, "the broker to stop").wait_for(lambda: not _alive(pid))
        except DeadlineExceeded:
            self._kill(pid)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(pid is not None, pid, self.bootstrap, self.version, self.home, self.pki.ca_file,
                            self.pki.password_file(ADMIN))

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's own log (or its console output when the log is empty)."""
        for path in (self.server_log, self.console_log):
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(the broker wrote no log)"

    def failure_report(self, lines: int = 40) -> str:
        """Why a start failed: the broker's first ERROR lines with the causes under them (a failed start logs
        a long shutdown after its cause), then the last lines."""
        text = ""
        for path in (self.server_log, self.console_log):
            if path.exists() and path.stat().st_size:
                text = path.read_text(errors="replace")
                break
        if not text:
            return "(the broker wrote no log)"
        all_lines = text.splitlines()
        causes: list[str] = []
        for i, line in enumerate(all_lines):
            if " ERROR " in line or line.startswith("Caused by:") or "Exception:" in line:
                causes.append(line)
                causes.extend(all_lines[i + 1:i + 3] if " ERROR " in line else [])
            if len(causes) >= 15:
                break
        tail = "\n".join(all_lines[-lines:])
        return ("--- errors ---\n" + "\n".join(causes) + "\n--- last lines ---\n" + tail) if causes else tail

    @staticmethod
    def _kill(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(DeadlineExceeded):
            Deadline(10, "the killed broker to exit").wait_for(lambda: not _alive(pid), interval=0.1)
        _reap(pid)


def secured_listener_properties(keystore: Path, ca_file: Path) -> dict[str, str]:
    """The security part of a node's configuration: TLS everywhere (PEM key and trust stores), SCRAM-SHA-512
    for clients, mutual TLS between brokers and controllers, deny-by-default ACLs, one super user."""
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_file),
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
        "ssl.endpoint.identification.algorithm": "https",
        "listener.name.internal.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        # A certificate's principal is its CN (brokers: kafka-broker).
        "ssl.principal.mapping.rules": "RULE:^CN=([a-zA-Z0-9._-]+),.*$/$1/,DEFAULT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.client.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN};User:{BROKER_CN}",
        "auto.create.topics.enable": "false",
    }


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state != "Z"


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _is_our_java(pid: int, properties_file: Path) -> bool:
    """True if ``pid`` is a live java process running ``kafka.Kafka`` with our properties file."""
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    return b"kafka.Kafka" in cmdline and str(properties_file).encode() in cmdline


def broker_from_settings(settings: HubSettings) -> LocalBroker:
    """The local broker as configured by :class:`hub.settings.HubSettings`."""
    lk = settings.local_kafka
    return LocalBroker(
        settings.kafka_home,
        version=lk.version,
        host=lk.host,
        port=lk.port,
        controller_port=lk.controller_port,
        internal_port=lk.internal_port,
        heap=lk.heap,
        num_partitions=lk.num_partitions,
        start_timeout_s=lk.start_timeout_s,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
