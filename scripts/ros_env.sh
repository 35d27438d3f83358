# Source me from sh, dash, bash or zsh:  . scripts/ros_env.sh
# Network-safe ROS 2 environment for every test, demo and benchmark process of this repository
# (ROS_PIP.md s.3): discovery limited to this host and the loopback-only Fast DDS profile with big
# shared-memory segments. (The pip stack is Kilted, which reads FASTDDS_DEFAULT_PROFILES_FILE;
# launch/segment.launch.py local_only:=true also sets the FASTRTPS_ name for Jazzy and older.)
# The repository is found from this file under bash and zsh; plain sh cannot tell a sourced
# file's path, so there source it from the repository root or set TQDM_ROS_ROOT.
if [ -n "${TQDM_ROS_ROOT:-}" ]; then
  _tqdm_ros_root=$TQDM_ROS_ROOT
elif [ -n "${BASH_SOURCE:-}" ]; then
  _tqdm_ros_root=$(cd "$(dirname "$BASH_SOURCE")/.." && pwd)
elif [ -n "${ZSH_VERSION:-}" ]; then
  _tqdm_ros_root=$(cd "$(dirname "$0")/.." && pwd)  # zsh: $0 is the sourced file
else
  _tqdm_ros_root=$(pwd)
fi
if [ ! -f "$_tqdm_ros_root/config/fastdds_localhost.xml" ]; then
  echo "ros_env.sh: no config/fastdds_localhost.xml under '$_tqdm_ros_root'; source this file" \
       "from the tqdm_ros repository root, or set TQDM_ROS_ROOT to it" >&2
  unset _tqdm_ros_root
  return 1 2>/dev/null || exit 1
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE="$_tqdm_ros_root/config/fastdds_localhost.xml"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export AMENT_PREFIX_PATH="$_tqdm_ros_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# rclpy needs a writable log directory: ROS's default ~/.ros/log, or a per-user one in /tmp when
# HOME is unset (CI containers).
if [ -z "${ROS_LOG_DIR:-}" ] && [ -z "${HOME:-}" ]; then
  export ROS_LOG_DIR="${TMPDIR:-/tmp}/ros_log_$(id -u)"
fi
# Shared-memory files of Fast DDS processes that died without cleaning up (about 140 MB each):
# Fast DDS's own tool removes only those whose lock no live process holds.
_tqdm_ros_fastdds="$_tqdm_ros_root/.venv/tools/fastdds/fastdds.py"
if [ -x "$_tqdm_ros_root/.venv/bin/python" ] && [ -f "$_tqdm_ros_fastdds" ]; then
  "$_tqdm_ros_root/.venv/bin/python" "$_tqdm_ros_fastdds" shm clean >/dev/null 2>&1 || true
fi
unset _tqdm_ros_fastdds
unset _tqdm_ros_root
