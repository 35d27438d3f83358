"""Launch the tqdm segmentation node (and optionally RViz) on one or several cameras.

    ros2 launch tqdm_ros segment.launch.py checkpoint:=/path/model.pt device:=cuda rviz:=true
    ros2 launch tqdm_ros segment.launch.py camera_topics:=/front/image_raw,/rear/image_raw
    ros2 launch tqdm_ros segment.launch.py camera_topics:="['/front/image_raw']" \
        input_transport:=compressed
    ros2 launch tqdm_ros segment.launch.py local_only:=true      # one machine, big images

Arguments left empty keep the value of the params file (config/segment.yaml by default). The node
configures and activates itself unless autostart:=false (then drive it with a lifecycle manager,
or `ros2 lifecycle set /segmentation_node configure`).

DDS: by default the node uses the environment's middleware settings, like any ROS package, so it
talks to cameras and RViz on other machines as the system integrator configured them.
local_only:=true keeps discovery on this host (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) and loads
the package's Fast DDS profile (64 MiB shared-memory segments for big images, UDP bound to
127.0.0.1). fastdds_profile:=<file> loads another profile, fastdds_profile:=none removes the
profile variable the environment may set. These changes apply to this launch file's processes
only (a scoped group), not to those of a launch file that includes it.

device and precision are checked by the node's own parameter validation before any process
starts. rviz:=true shows the first camera (of camera_topics, else of the params file), in the
node's namespace, with a copy of config/segment.rviz written for it in a temporary folder.
The decisions are tqdm_ros.launch_arguments.
"""

import os
import shutil
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction
from launch.actions import RegisterEventHandler, SetEnvironmentVariable
from launch.actions import UnsetEnvironmentVariable
from launch.event_handlers import OnShutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from tqdm_ros.launch_arguments import ARGUMENT_PARAMETERS, check_node_parameters
from tqdm_ros.launch_arguments import dds_environment, node_parameter_overrides, NODE_NAME
from tqdm_ros.launch_arguments import parse_bool, rviz_camera, rviz_config

PACKAGE = 'tqdm_ros'


def _launch_processes(context, *, shipped_profile: str, rviz_template: str):
    def argument(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    environment = dds_environment(
        local_only=parse_bool('local_only', argument('local_only')),
        fastdds_profile=argument('fastdds_profile'), shipped_profile=shipped_profile,
        distro=os.environ.get('ROS_DISTRO'))
    overrides = node_parameter_overrides({name: argument(name) for name in ARGUMENT_PARAMETERS})
    params_file, namespace = argument('params_file'), argument('namespace')
    check_node_parameters(overrides, params_file=params_file, namespace=namespace)
    show_rviz = parse_bool('rviz', argument('rviz'))
    actions = [SetEnvironmentVariable(name, value) if value is not None
               else UnsetEnvironmentVariable(name) for name, value in environment.items()]
    actions.append(LifecycleNode(
        package=PACKAGE,
        executable='segmentation_node',
        name=NODE_NAME,
        namespace=namespace,
        parameters=[params_file, overrides],
        output='screen',
        emulate_tty=True,
    ))
    cleanup = []
    if show_rviz:
        with open(rviz_template) as file:
            config = rviz_config(file.read(), **rviz_camera(
                overrides, params_file=params_file, namespace=namespace))
        folder = tempfile.mkdtemp(prefix='tqdm_ros_rviz_')
        config_file = os.path.join(folder, os.path.basename(rviz_template))
        with open(config_file, 'w') as file:
            file.write(config)
        actions.append(Node(package='rviz2', executable='rviz2', arguments=['-d', config_file]))
        cleanup.append(RegisterEventHandler(OnShutdown(
            on_shutdown=lambda event, context: shutil.rmtree(folder, ignore_errors=True))))
    # Scoped: the environment changes reach these processes only, not those of a launch file
    # that includes this one (GroupAction pushes and pops the environment since Humble).
    return [GroupAction(actions, scoped=True), *cleanup]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    config = os.path.join(share, 'config')
    return LaunchDescription([
        DeclareLaunchArgument(
            'camera_topics', default_value='',
            description="image topics: /front/image_raw,/rear/image_raw or ['/front/image_raw']"),
        DeclareLaunchArgument(
            'input_transport', default_value='',
            description="'raw' (sensor_msgs/Image) or 'compressed' (CompressedImage on "
                        '<topic>/compressed)'),
        DeclareLaunchArgument(
            'params_file', default_value=os.path.join(config, 'segment.yaml'),
            description='node parameters (YAML keyed /**/segmentation_node)'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description="path of a tqdm checkpoint, or 'default'"),
        DeclareLaunchArgument('preset', default_value='',
                              description='model preset, e.g. tqdm-clip-vit-b16'),
        DeclareLaunchArgument('model', default_value='',
                              description="deprecated name of 'preset'"),
        DeclareLaunchArgument('device', default_value='',
                              description="'cpu', 'cuda' or 'cuda:<index>'"),
        DeclareLaunchArgument('precision', default_value='',
                              description="'auto', 'fp32', 'bf16' or 'fp16'"),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node'),
        DeclareLaunchArgument('autostart', default_value='',
                              description="'false' leaves configure/activate to a manager"),
        DeclareLaunchArgument(
            'local_only', default_value='false',
            description="'true': discovery on this host only, with the package's loopback "
                        'Fast DDS profile (big images over shared memory)'),
        DeclareLaunchArgument(
            'fastdds_profile', default_value='auto',
            description="'auto' (the loopback profile with local_only, else the environment's), "
                        "'none' (no profile file) or the path of a Fast DDS XML profile"),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='also start RViz with config/segment.rviz, on the '
                                          'first camera'),
        OpaqueFunction(function=_launch_processes, kwargs={
            'shipped_profile': os.path.join(config, 'fastdds_localhost.xml'),
            'rviz_template': os.path.join(config, 'segment.rviz')}),
    ])
