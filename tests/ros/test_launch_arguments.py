"""tqdm_ros.launch_arguments: what segment.launch.py makes of its arguments."""

import pytest

from tests.ros.ros_harness import REPO_ROOT
from tqdm_ros.launch_arguments import (
    dds_environment, LaunchArgumentError, loopback_environment, node_parameter_overrides,
    parse_bool, parse_topic_list)


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
