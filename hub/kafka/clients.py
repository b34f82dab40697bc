"""The one place Kafka clients are made: every client of the project connects through here.

:func:`access_for` answers "where, and as whom": the bootstrap servers, TLS (the cluster's CA, the broker's
host name checked) and the principal with its SCRAM password, all from :class:`hub.settings.HubSettings`
(``HUB_KAFKA__*``). The factories below turn that into an aiokafka producer, consumer, admin or low-level
client, faust's broker credentials, a librdkafka (confluent-kafka) configuration for the admin tasks
aiokafka lacks (ACLs, SCRAM users), or a Java client properties file for Kafka's own tools.

Which principal: ``HUB_KAFKA__USERNAME`` when set (production: one per service or person), else the
principal of the command's role (``worker``, ``gateway``, ``sig-1381`` …) with its password read from
``HUB_KAFKA__CREDENTIALS_DIR`` (default: the local broker's ``security/users``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from hub.kafka.shape import bootstrap_list, read_shape
from hub.settings import HubSettings


class KafkaAccessError(RuntimeError):
    """This process has no usable credentials for the principal it must connect as; the message says which
    setting to give."""


@dataclass(frozen=True)
class KafkaAccess:
    """Where the cluster is and as whom to connect: everything a client needs, nothing read later."""

    bootstrap: str
    security_protocol: str = "SASL_SSL"
    sasl_mechanism: str = "SCRAM-SHA-512"
    principal: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True

    def __repr__(self) -> str:  # never the password
        return f"KafkaAccess({self.bootstrap}, {self.security_protocol}, principal={self.principal})"

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = self.check_hostname
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file or self.cert_file))
        return ctx

    def options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client."""
        opts: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.uses_tls:
            opts["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.principal
            opts["sasl_plain_password"] = self.password.get_secret_value() if self.password else None
        return opts

    def librdkafka_config(self) -> dict[str, str]:
        """The same access for confluent-kafka (librdkafka)."""
        conf = {"bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol}
        if self.uses_tls:
            if self.ca_file:
                conf["ssl.ca.location"] = str(self.ca_file)
            conf["ssl.endpoint.identification.algorithm"] = "https" if self.check_hostname else "none"
            if self.cert_file:
                conf["ssl.certificate.location"] = str(self.cert_file)
                conf["ssl.key.location"] = str(self.key_file or self.cert_file)
        if self.uses_sasl:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.principal or ""
            conf["sasl.password"] = self.password.get_secret_value() if self.password else ""
        return conf

    def java_properties(self, password_file: Path | None = None) -> str:
        """A Java client properties file (``kafka-console-consumer --command-config``)."""
        lines = [f"bootstrap.servers={self.bootstrap}", f"security.protocol={self.security_protocol}"]
        if self.uses_tls and self.ca_file:
            lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={self.ca_file}"]
            if not self.check_hostname:
                lines.append("ssl.endpoint.identification.algorithm=")
        if self.uses_tls and self.cert_file:
            lines += ["ssl.keystore.type=PEM", f"ssl.keystore.location={self.cert_file}"]
        if self.uses_sasl:
            secret = self.password.get_secret_value() if self.password else ""
            lines += [
                f"sasl.mechanism={self.sasl_mechanism}",
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{self.principal}" password="{secret}";',
            ]
        return "\n".join(lines) + "\n"

    def as_principal(self, principal: str, password: SecretStr) -> KafkaAccess:
        return replace(self, principal=principal, password=password)


def local_security_dir(settings: HubSettings) -> Path:
    """Where ``hub kafka up`` keeps the local cluster's CA, certificates and passwords."""
    return settings.kafka_home / "security"


def credentials_dir(settings: HubSettings) -> Path:
    return settings.kafka.credentials_dir or local_security_dir(settings) / "users"


def bootstrap_of(settings: HubSettings) -> str:
    """``HUB_KAFKA_BOOTSTRAP``, else the local broker's client listener."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    lk = settings.local_kafka
    shape = read_shape(settings.kafka_home)  # a local cluster: every node, so any one of them may be down
    return bootstrap_list(lk.host, lk.port, shape.nodes if shape else 1)


def _read_secret(path: Path, principal: str) -> SecretStr:
    try:
        return SecretStr(path.read_text().strip())
    except FileNotFoundError:
        raise KafkaAccessError(
            f"no Kafka password for principal {principal!r}: {path} does not exist (set HUB_KAFKA__PASSWORD or "
            "HUB_KAFKA__PASSWORD_FILE for this process, or HUB_KAFKA__CREDENTIALS_DIR)") from None
    except PermissionError:
        raise KafkaAccessError(f"cannot read the Kafka password of {principal!r} ({path}): permission denied") from None


def access_as(settings: HubSettings, principal: str, *, bootstrap: str | None = None) -> KafkaAccess:
    """Connect as exactly ``principal`` (its password from settings or the credentials folder)."""
    k = settings.kafka
    if k.security_protocol == "PLAINTEXT" and settings.env != "dev":
        raise KafkaAccessError("HUB_KAFKA__SECURITY_PROTOCOL=PLAINTEXT is refused outside HUB_ENV=dev")
    password: SecretStr | None = None
    if k.security_protocol.startswith("SASL_"):
        if k.username == principal and k.password is not None:
            password = k.password
        elif k.username == principal and k.password_file is not None:
            password = _read_secret(k.password_file, principal)
        else:
            password = _read_secret(credentials_dir(settings) / f"{principal}.password", principal)
    ca = k.ca_file or local_security_dir(settings) / "ca.pem"
    return KafkaAccess(
        bootstrap=bootstrap or bootstrap_of(settings), security_protocol=k.security_protocol,
        sasl_mechanism=k.sasl_mechanism, principal=principal, password=password,
        ca_file=ca if k.security_protocol != "PLAINTEXT" else None, cert_file=k.cert_file, key_file=k.key_file,
        check_hostname=k.check_hostname,
    )


def access_for(settings: HubSettings, role: str, *, bootstrap: str | None = None) -> KafkaAccess:
    """Connect as this process's principal: ``HUB_KAFKA__USERNAME`` when set, else ``role``."""
    return access_as(settings, settings.kafka.username or role, bootstrap=bootstrap)


# -- the factories ---------------------------------------------------------------------------------------


def producer(access: KafkaAccess, **overrides: Any) -> Any:
    """An (unstarted) ``AIOKafkaProducer``."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**{**access.options(), **overrides})


def consumer(access: KafkaAccess, *topics: str, **overrides: Any) -> Any:
    """An (unstarted) ``AIOKafkaConsumer``; ``group_id=None``, no auto-commit and ``read_committed`` unless
    overridden: the worker writes in transactions, and what an aborted one wrote must never be read."""
    from aiokafka import AIOKafkaConsumer

    options: dict[str, Any] = {"group_id": None, "enable_auto_commit": False, "isolation_level": "read_committed",
                               **access.options(), **overrides}  # fmt: skip
    return AIOKafkaConsumer(*topics, **options)


def admin(access: KafkaAccess, **overrides: Any) -> Any:
    """An (unstarted) ``AIOKafkaAdminClient``."""
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**{**access.options(), **overrides})


def client(access: KafkaAccess, **overrides: Any) -> Any:
    """A low-level ``AIOKafkaClient`` (metadata requests)."""
    from aiokafka import AIOKafkaClient

    return AIOKafkaClient(**{**access.options(), **overrides})


def faust_credentials(access: KafkaAccess) -> Any:
    """faust's ``broker_credentials`` for this access (None for PLAINTEXT)."""
    import faust

    if access.uses_sasl:
        return faust.SASLCredentials(
            username=access.principal, password=access.password.get_secret_value() if access.password else None,
            ssl_context=access.ssl_context(), mechanism=access.sasl_mechanism,
        )
    if access.uses_tls:
        return faust.SSLCredentials(access.ssl_context())
    return None
