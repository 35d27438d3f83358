"""Launch the tqdm segmentation node (and optionally RViz) on one or several cameras.

    ros2 launch tqdm_ros segment.launch.py checkpoint:=/path/model.pt device:=cuda rviz:=true
    ros2 launch tqdm_ros segment.launch.py checkpoint:=m.pt camera_topics:=/front/image,/rear/image

Arguments left empty keep the value of the params file (config/segment.yaml by default). The node
configures and activates itself unless autostart:=false (then drive it with a lifecycle manager,
or `ros2 lifecycle set /segmentation_node configure`). The shipped Fast DDS profile (shared
memory sized for big images, UDP on 127.0.0.1 only) is used unless fastdds_profile:=''; clear it
when the cameras publish from another machine.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = 'tqdm_ros'

# Launch argument -> node parameter, applied over the params file when the argument is not empty.
ARGUMENT_PARAMETERS = {
    'camera_topics': 'input_topics',
    'checkpoint': 'checkpoint',
    'model': 'model',
    'device': 'device',
    'precision': 'precision',
    'autostart': 'autostart',
}

# Fast DDS 3 (Kilted and newer) reads FASTDDS_DEFAULT_PROFILES_FILE; older distros only the
# FASTRTPS_ name, which Kilted reports as deprecated.
PROFILE_VARIABLE = ('FASTRTPS_DEFAULT_PROFILES_FILE'
                    if os.environ.get('ROS_DISTRO') in ('humble', 'iron', 'jazzy')
                    else 'FASTDDS_DEFAULT_PROFILES_FILE')


def _parameter_overrides(context) -> dict:
    """Node parameters from the non-empty launch arguments, converted to their types."""
    overrides = {}
    for argument, parameter in ARGUMENT_PARAMETERS.items():
        value = LaunchConfiguration(argument).perform(context).strip()
        if not value:
            continue
        if parameter == 'input_topics':
            overrides[parameter] = [t.strip() for t in value.split(',') if t.strip()]
        elif parameter == 'autostart':
            if value.lower() not in ('true', 'false'):
                raise ValueError(f"launch argument autostart must be 'true' or 'false', "
                                 f'got {value!r}')
            overrides[parameter] = value.lower() == 'true'
        else:
            overrides[parameter] = value
    return overrides


def _launch_node(context):
    actions = []
    profile = LaunchConfiguration('fastdds_profile').perform(context)
    if profile:
        actions += [
            SetEnvironmentVariable(PROFILE_VARIABLE, profile),
            SetEnvironmentVariable('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST'),
        ]
    actions.append(LifecycleNode(
        package=PACKAGE,
        executable='segmentation_node',
        name='segmentation_node',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'), _parameter_overrides(context)],
        output='screen',
        emulate_tty=True,
    ))
    return actions


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    config = os.path.join(share, 'config')
    return LaunchDescription([
        DeclareLaunchArgument(
            'camera_topics', default_value='',
            description='comma-separated image topics, e.g. /front/image_raw,/rear/image_raw'),
        DeclareLaunchArgument(
            'params_file', default_value=os.path.join(config, 'segment.yaml'),
            description='node parameters (YAML keyed /**/segmentation_node)'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description='path of a tqdm checkpoint'),
        DeclareLaunchArgument('model', default_value='',
                              description='model preset, e.g. tqdm-clip-vit-b16'),
        DeclareLaunchArgument('device', default_value='',
                              description="'cpu', 'cuda' or 'cuda:<index>'"),
        DeclareLaunchArgument('precision', default_value='',
                              description="'fp32', 'bf16' or 'fp16'"),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node'),
        DeclareLaunchArgument('autostart', default_value='',
                              description="'false' leaves configure/activate to a manager"),
        DeclareLaunchArgument(
            'fastdds_profile', default_value=os.path.join(config, 'fastdds_localhost.xml'),
            description="Fast DDS XML profile; '' keeps the environment's DDS settings"),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='also start RViz with config/segment.rviz'),
        OpaqueFunction(function=_launch_node),
        Node(
            package='rviz2',
            executable='rviz2',
            arguments=['-d', os.path.join(config, 'segment.rviz')],
            condition=IfCondition(LaunchConfiguration('rviz')),
        ),
    ])
