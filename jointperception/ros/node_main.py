"""The ``main()`` every node executable shares: init, build, spin, report, shut down.

Exit codes: 0 for a normal stop (the node finished, Ctrl-C or SIGTERM), 2 with one stderr line
when the node cannot start (a parameter of the wrong type or range, a broken ``--params-file``,
a bad model or source),
1 when the node reports a failure of its own after starting.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import rclpy
import yaml
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node

from jointperception.errors import ConfigError, JointPerceptionError

NodeT = TypeVar("NodeT", bound=Node)


@contextmanager
def normal_stops() -> Iterator[None]:
    """Ends the block quietly on a normal stop: Ctrl-C, SIGTERM (ExternalShutdownException), or
    rclpy's signal handler shutting the context down between an executor's ok() check and its
    wait set (RCLError "the given context is not valid"), but on that error only once the
    context is really shut down; any other error propagates."""
    try:
        yield
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except rclpy_implementation.RCLError:
        if rclpy.ok():
            raise


def check_params_files(args: list[str]) -> None:
    """ConfigError naming the file and line for a ``--params-file`` that is missing or not YAML
    (rcl would only say that it failed to parse its arguments)."""
    files = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--params-file"]
    for name in files:
        try:
            yaml.safe_load(Path(name).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read params file ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{name}: params file is not UTF-8 text") from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError(f"{name}: not valid YAML{line} ({problem})") from None


def run_node(
    program: str,
    create: Callable[[], NodeT],
    spin: Callable[[NodeT], None],
    failed: Callable[[NodeT], bool] = lambda node: False,
    args: list[str] | None = None,
) -> int:
    """rclpy.init(args), ``create()`` the node, ``spin(node)`` until it returns -> exit code."""
    try:
        check_params_files(sys.argv if args is None else args)
        rclpy.init(args=args)
    except JointPerceptionError as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        return 2
    except rclpy_implementation.RCLError as exc:  # bad --ros-args: rcl names the rule, then its C sources
        print(f"{program}: error: {str(exc).split(', at /')[0]}", file=sys.stderr)
        return 2
    node: NodeT | None = None
    exit_code = 0
    try:
        with normal_stops():
            node = create()
            spin(node)
    except (JointPerceptionError, ParameterException) as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        exit_code = 2
    finally:
        if node is not None:
            if exit_code == 0 and failed(node):
                exit_code = 1
            node.destroy_node()
        rclpy.try_shutdown()
    return exit_code
