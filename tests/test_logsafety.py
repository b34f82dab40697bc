"""No personnummer reaches a log line, whatever code logs."""

from __future__ import annotations

import io
import logging

from hub import logsafety


def test_root_handlers_redact_personnummer_in_messages_args_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.root.addHandler(handler)
    try:
        logsafety.install()
        log = logging.getLogger("test.logsafety")
        log.warning("person %s and 19121212-1212 and 121212+1212", "191212121212")
        try:
            raise ValueError("bad subject 20110305-9985")
        except ValueError:
            log.exception("failed")
    finally:
        logging.root.removeHandler(handler)
    text = stream.getvalue()
    for pnr in ("191212121212", "19121212-1212", "121212+1212", "20110305-9985"):
        assert pnr not in text
    assert text.count("<personnummer>") >= 4
    assert "bad subject" in text


def test_aiokafka_debug_wire_dumps_are_dropped() -> None:
    logsafety.install()
    record = logging.LogRecord("aiokafka.conn", logging.DEBUG, __file__, 1, "payload %r", (b"x",), None)
    assert not logging.getLogger("aiokafka.conn").filter(record)
