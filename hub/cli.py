"""The ``hub`` command: parse arguments, call the module that does the work, print the result.

Readable text for people; ``--json`` where a program reads the output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from hub.settings import HubSettings, get_settings

Handler = Callable[[argparse.Namespace, HubSettings], int]


def _print_json(data: object) -> None:
    print(json.dumps(data, ensure_ascii=False, default=str))


# -- hub kafka ----------------------------------------------------------------------------------------


def _kafka_up(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.kafka.local import BrokerError, broker_from_settings

    if settings.kafka_bootstrap:
        print(f"HUB_KAFKA_BOOTSTRAP is set; using the existing cluster at {settings.kafka_bootstrap}")
        return 0
    broker = broker_from_settings(settings)
    print(f"starting Apache Kafka {broker.version} (KRaft) in {broker.home} ...", file=sys.stderr)
    try:
        bootstrap = broker.up()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(bootstrap)
    return 0


def _kafka_down(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.kafka.local import broker_from_settings

    broker = broker_from_settings(settings)
    stopped = broker.down()
    print("stopped" if stopped else "not running")
    return 0


def _kafka_status(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.kafka.local import broker_from_settings

    status = broker_from_settings(settings).status()
    if args.json:
        _print_json(status.as_dict())
    elif status.running:
        print(f"running: Apache Kafka {status.version} at {status.bootstrap} "
              f"(pid {status.pid}, {status.home})")
    else:
        print(f"not running (home {status.home})")
    return 0 if status.running else 3


def _kafka_logs(args: argparse.Namespace, settings: HubSettings) -> int:
    from hub.kafka.local import broker_from_settings

    print(broker_from_settings(settings).log_tail(args.lines))
    return 0


# -- parser -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hub",
        description="Samverkan Hub: lawful event sharing between police, prison service and municipalities.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kafka = sub.add_parser("kafka", help="the local Apache Kafka broker (KRaft) for development and tests")
    ksub = kafka.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    ksub.add_parser("up", help="start the broker (idempotent); prints the bootstrap address").set_defaults(
        handler=_kafka_up
    )
    ksub.add_parser("down", help="stop the broker cleanly").set_defaults(handler=_kafka_down)
    st = ksub.add_parser("status", help="running or not, and where (exit 3 when not running)")
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.set_defaults(handler=_kafka_status)
    lg = ksub.add_parser("logs", help="the last lines of the broker's own log")
    lg.add_argument("-n", "--lines", type=int, default=50)
    lg.set_defaults(handler=_kafka_logs)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    handler: Handler = args.handler
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
