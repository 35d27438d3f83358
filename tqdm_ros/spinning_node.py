"""A helper node spun by its own executor thread, for the tools that drive the segmentation node."""
from collections.abc import Iterator
from contextlib import contextmanager
import threading

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


@contextmanager
def spinning_node(name: str, *, context: Context, join_timeout_s: float = 10.0) -> Iterator[Node]:
    """Yield a node of ``context`` spun by its own executor thread; shut both down on exit.

    Args:
        name: node name.
        context: an initialised rclpy context.
        join_timeout_s: how long to wait for the executor thread after shutdown.
    """
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name=f'{name}_executor', daemon=True)
    spinner.start()
    try:
        yield node
    finally:
        executor.shutdown()
        spinner.join(join_timeout_s)
        node.destroy_node()
