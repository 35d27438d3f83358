"""tqdm_ros.launch_arguments: what segment.launch.py makes of its arguments."""

import pytest
import yaml

from tests.ros.ros_harness import REPO_ROOT
from tqdm_ros.launch_arguments import (
    check_node_parameters, dds_environment, LaunchArgumentError, loopback_environment,
    node_parameter_overrides, params_file_parameters, parse_bool, parse_topic_list, rviz_camera,
    rviz_config)


@pytest.mark.parametrize('text', [
    '/front/image_raw,/rear/image_raw',
    ' /front/image_raw , /rear/image_raw ,',
    "['/front/image_raw', '/rear/image_raw']",
    '[/front/image_raw, /rear/image_raw]',
    '["/front/image_raw","/rear/image_raw"]',
])
def test_camera_topics_as_comma_or_yaml_list(text):
    assert parse_topic_list(text) == ['/front/image_raw', '/rear/image_raw']


@pytest.mark.parametrize('text, message', [
    ("['/a/image', 3]", 'must list topic names'),
    ("['/a/image'", 'looks like a YAML list but does not parse'),
    ('[]', 'names no topic'),
    (' , ', 'names no topic'),
])
def test_bad_camera_topics_name_the_argument(text, message):
    with pytest.raises(LaunchArgumentError, match='camera_topics') as error:
        parse_topic_list(text)
    assert message in str(error.value)


def test_overrides_skip_empty_arguments_and_convert_types():
    assert node_parameter_overrides({}) == {}
    overrides = node_parameter_overrides({
        'camera_topics': "['/camera/image_raw']", 'autostart': 'False', 'device': ' cuda:1 ',
        'input_transport': 'compressed', 'checkpoint': '', 'preset': 'tqdm-tiny-rn'})
    assert overrides == {'input_topics': ['/camera/image_raw'], 'autostart': False,
                         'device': 'cuda:1', 'input_transport': 'compressed',
                         'preset': 'tqdm-tiny-rn'}


@pytest.mark.parametrize('arguments, message', [
    ({'autostart': 'maybe'}, "launch argument autostart must be 'true' or 'false', got 'maybe'"),
    ({'input_transport': 'theora'},
     "launch argument input_transport must be one of raw, compressed, got 'theora'"),
])
def test_bad_arguments_are_refused_with_their_name(arguments, message):
    with pytest.raises(LaunchArgumentError) as error:
        node_parameter_overrides(arguments)
    assert str(error.value) == message


def test_parse_bool():
    assert parse_bool('local_only', 'TRUE') and not parse_bool('local_only', 'false')
    with pytest.raises(LaunchArgumentError, match="local_only must be 'true' or 'false'"):
        parse_bool('local_only', 'yes')


SHIPPED = str(REPO_ROOT / 'config' / 'fastdds_localhost.xml')


def environment(local_only=False, profile='auto', distro='kilted'):
    return dds_environment(local_only=local_only, fastdds_profile=profile,
                           shipped_profile=SHIPPED, distro=distro)


def test_by_default_the_environment_is_inherited():
    assert environment() == {}


def test_local_only_uses_localhost_discovery_and_the_shipped_profile(tmp_path):
    assert environment(local_only=True) == {
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'FASTDDS_DEFAULT_PROFILES_FILE': SHIPPED}
    # Fast DDS 2 reads only the FASTRTPS_ name; Humble predates the discovery range variable.
    assert environment(local_only=True, distro='jazzy') == {
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'FASTRTPS_DEFAULT_PROFILES_FILE': SHIPPED}
    assert environment(local_only=True, distro='humble') == {
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'ROS_LOCALHOST_ONLY': '1',
        'FASTRTPS_DEFAULT_PROFILES_FILE': SHIPPED}


def test_the_tools_loopback_environment_is_local_only_for_every_distro_at_once():
    """What the benchmarks set: the launch's local_only settings of Humble, Jazzy and Kilted
    together, since they cannot know which distro's Fast DDS runs."""
    together = {}
    for distro in ('humble', 'jazzy', 'kilted'):
        together |= environment(local_only=True, distro=distro)
    assert loopback_environment(SHIPPED) == together


def test_profile_none_removes_the_profile_variables_and_a_path_is_used_as_given(tmp_path):
    assert environment(profile='none') == {
        'FASTDDS_DEFAULT_PROFILES_FILE': None, 'FASTRTPS_DEFAULT_PROFILES_FILE': None}
    profile = tmp_path / 'robot.xml'
    profile.write_text('<dds/>')
    assert environment(profile=str(profile)) == {'FASTDDS_DEFAULT_PROFILES_FILE': str(profile)}
    assert environment(local_only=True, profile=str(profile)) == {
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'FASTDDS_DEFAULT_PROFILES_FILE': str(profile)}


def test_a_missing_profile_file_is_refused():
    with pytest.raises(LaunchArgumentError) as error:
        environment(profile='/nowhere/profile.xml')
    assert str(error.value) == (
        "launch argument fastdds_profile: '/nowhere/profile.xml' is not a file; give the path "
        "of a Fast DDS XML profile, 'auto' or 'none'")


def params_file(tmp_path, text: str) -> str:
    path = tmp_path / 'params.yaml'
    path.write_text(text)
    return str(path)


def test_params_file_sections_match_the_node_as_rcl_does(tmp_path):
    path = params_file(tmp_path, '\n'.join([
        '/**:', '  ros__parameters: {device: cpu, precision: fp32}',
        '/**/segmentation_node:', '  ros__parameters: {precision: bf16}',
        '/robot/segmentation_node:', '  ros__parameters: {device: cuda}',
        '/*/other_node:', '  ros__parameters: {device: unused}']))
    assert params_file_parameters(path, namespace='') == {'device': 'cpu', 'precision': 'bf16'}
    assert params_file_parameters(path, namespace='robot') == {
        'device': 'cuda', 'precision': 'bf16'}
    with pytest.raises(LaunchArgumentError, match="launch argument params_file: cannot read"):
        params_file_parameters(str(tmp_path / 'missing.yaml'), namespace='')


def test_inference_arguments_are_checked_by_the_node_validation_over_the_params_file(tmp_path):
    shipped = str(REPO_ROOT / 'config' / 'segment.yaml')
    check_node_parameters({'precision': 'bf16', 'device': 'cuda:1'}, params_file=shipped,
                          namespace='')
    with pytest.raises(LaunchArgumentError) as error:
        check_node_parameters({'precision': 'fp64'}, params_file=shipped, namespace='')
    assert str(error.value) == (
        f"launch arguments (precision:=fp64) with {shipped}: parameter 'precision' must be one "
        "of 'auto', 'fp32', 'bf16', 'fp16', got 'fp64'")
    cuda = params_file(tmp_path, '/**:\n  ros__parameters: {device: cuda}\n')
    check_node_parameters({'precision': 'fp16'}, params_file=cuda, namespace='')
    # Without an inference argument nothing that needs the node's table (torch) is checked.
    check_node_parameters({'input_topics': ['/a/image']}, params_file='/nowhere.yaml',
                          namespace='')


RVIZ_TEMPLATE = (REPO_ROOT / 'config' / 'segment.rviz').read_text()


def rviz_topics(**camera) -> list:
    config = yaml.safe_load(rviz_config(RVIZ_TEMPLATE, **camera))
    return [display['Topic']['Value'] for display in config['Visualization Manager']['Displays']]


def test_rviz_config_follows_the_camera_namespace_and_transport():
    assert rviz_topics(input_topic='/camera/image_raw', transport='raw',
                       output_namespace='segmentation', namespace='') == [
        '/camera/image_raw', '/camera/segmentation/overlay', '/camera/segmentation/color_mask',
        '/camera/segmentation/confidence_mono8']
    assert rviz_topics(input_topic='left/image', transport='compressed',
                       output_namespace='seg', namespace='/robot/') == [
        '/robot/left/image/compressed', '/robot/left/seg/overlay', '/robot/left/seg/color_mask',
        '/robot/left/seg/confidence_mono8']


def test_rviz_camera_comes_from_the_arguments_else_the_params_file(tmp_path):
    path = params_file(tmp_path, '/**/segmentation_node:\n  ros__parameters:\n'
                       "    input_topics: ['/front/image_raw', '/rear/image_raw']\n"
                       '    input_transport: compressed\n    output_namespace: seg\n')
    assert rviz_camera({}, params_file=path, namespace='ns') == {
        'input_topic': '/front/image_raw', 'transport': 'compressed', 'output_namespace': 'seg',
        'namespace': 'ns'}
    overrides = {'input_topics': ['/rear/image_raw'], 'input_transport': 'raw'}
    assert rviz_camera(overrides, params_file=path, namespace='') == {
        'input_topic': '/rear/image_raw', 'transport': 'raw', 'output_namespace': 'seg',
        'namespace': ''}
