"""Running a node's spin loop so that Ctrl-C is a normal stop for every node."""
from __future__ import annotations

from collections.abc import Callable

from rclpy.context import Context
from rclpy.executors import ExternalShutdownException


def spin_until_stopped(spin: Callable[[], None], context: Context) -> None:
    """Run ``spin``; Ctrl-C, and the errors it causes, end it quietly; real errors propagate.

    rclpy's signal handler shuts the context down asynchronously, so whatever the
    node or its executor does a moment later (create the executor's wait timer,
    re-arm a timer, publish) raises RCLError instead of KeyboardInterrupt. Any
    exception raised once the context is down is that race: a normal stop.
    """
    try:
        spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if context.ok():
            raise
