"""What the installed rclpy offers beyond Humble's, checked once at import.

rclpy before Iron (Humble) calls subscription callbacks with the message only (no MessageInfo:
no publisher sequence numbers or timestamps) and has no post-set parameter callbacks. The node and
the live evaluation do without them there.
"""
from rclpy.lifecycle import LifecycleNode
from rclpy.subscription import Subscription

MESSAGE_INFO_CALLBACKS = hasattr(Subscription, 'CallbackType')
POST_SET_PARAMETER_CALLBACKS = hasattr(LifecycleNode, 'add_post_set_parameters_callback')
