"""The ``main()`` every node executable shares: init, build, spin, report, shut down.

Exit codes: 0 for a normal stop (the node finished, Ctrl-C or SIGTERM), 2 with one stderr line
when the node cannot start (a parameter of the wrong type or range, a bad model or source),
1 when the node reports a failure of its own after starting.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node

from jointperception.errors import JointPerceptionError

NodeT = TypeVar("NodeT", bound=Node)


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
        node = create()
        spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or SIGTERM: a normal stop
    except rclpy_implementation.RCLError:
        # rclpy's signal handler may shut the context down between the executor's ok() check and
        # its wait set ("the given context is not valid"): also a normal stop, but only then
        if rclpy.ok():
            raise
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
