"""No personnummer in any log line: two guards every hub process installs at start.

1. aiokafka logs whole produce requests, message values and fetch responses at DEBUG
   (``aiokafka.conn``, ``aiokafka.producer.producer``, ...); those carry events and so personnummer.
   Every aiokafka logger drops its DEBUG records.
2. Every handler of the root logger redacts anything that looks like a personnummer (10 or 12 digits,
   with or without a separator) from the formatted message — a last line of defence should any code
   ever put one into a message or an exception.
"""

from __future__ import annotations

import logging

from hub.contract.personnummer import SHAPED

_AIOKAFKA = ("aiokafka", "aiokafka.conn", "aiokafka.producer.producer", "aiokafka.producer.sender",
             "aiokafka.consumer.fetcher", "aiokafka.consumer.consumer", "aiokafka.protocol")  # fmt: skip


def redact(text: str) -> str:
    """``text`` with every personnummer-shaped number replaced by ``<personnummer>``."""
    return SHAPED.sub("<personnummer>", text)


class _NoWireDumps(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (arguments and exception text included) with personnummer redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_WIRE = _NoWireDumps()
_REDACT = RedactingFilter()


def protect_kafka_logs() -> None:
    """Drop aiokafka's DEBUG wire dumps on every aiokafka logger (idempotent)."""
    known = [n for n in logging.root.manager.loggerDict if n == "aiokafka" or n.startswith("aiokafka.")]
    for name in {*known, *_AIOKAFKA}:
        logger = logging.getLogger(name)
        if _WIRE not in logger.filters:
            logger.addFilter(_WIRE)


def install() -> None:
    """Both guards: on aiokafka's loggers and on every handler of the root logger (idempotent)."""
    protect_kafka_logs()
    for handler in logging.root.handlers:
        if _REDACT not in handler.filters:
            handler.addFilter(_REDACT)
