"""``jointperception <subcommand>``: one module per subcommand under ``jointperception.commands``.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Problems the user can fix (``JointPerceptionError``) are printed as one
line on stderr with a non-zero exit code; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

from jointperception.errors import JointPerceptionError

# subcommand name -> module under jointperception.commands
COMMANDS = {
    "generate": "generate",
    "train": "train",
    "eval": "evaluate",
    "export": "export",
    "build-engine": "build_engine",
    "predict": "predict",
    "bench": "bench",
    "demo": "demo",
    "replay": "replay",
    "replay-fleet": "replay_fleet",
    "record-sample": "record_sample",
}

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT) or SIGTERM: outputs are removed or left marked (docs/outputs.md)


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM ends a command as Ctrl-C does, so its partial outputs are cleaned up (``outputs``)."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one stderr line (and exit 2), as every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="jointperception", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"jointperception.commands.{module_name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports every command (torch among them): seconds in which Ctrl-C may come
    except KeyboardInterrupt:
        print("jointperception: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    in_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers can be set
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        return int(args.run(args) or 0)
    except JointPerceptionError as exc:
        print(f"jointperception {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"jointperception {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
