"""The ``main()`` every node executable shares: init, build, spin, report, shut down.

Exit codes: 0 for a normal stop (the node finished, Ctrl-C or SIGTERM), 2 with one stderr line
when the node cannot start (a parameter of the wrong type or range, a bad model or source),
1 when the node reports a failure of its own after starting.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node

from jointperception.errors import JointPerceptionError

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


def run_node(
    program: str,
    create: Callable[[], NodeT],
    spin: Callable[[NodeT], None],
    failed: Callable[[NodeT], bool] = lambda node: False,
    args: list[str] | None = None,
) -> int:
    """rclpy.init(args), ``create()`` the node, ``spin(node)`` until it returns -> exit code."""
    rclpy.init(args=args)
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
