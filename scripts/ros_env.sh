#!/usr/bin/env bash
# Source me. Network-safe ROS 2 environment for every test, demo and benchmark process (ROS_PIP.md s.3):
# discovery limited to this host, and the loopback-only Fast DDS profile with big shared-memory segments.
# (The pip stack is Kilted, which reads FASTDDS_DEFAULT_PROFILES_FILE; launch/segment.launch.py also sets the
# FASTRTPS_ name for Jazzy and older.)
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE="$_root/config/fastdds_localhost.xml"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export ROS_LOG_DIR="${ROS_LOG_DIR:-$_root/runs/ros_log}"
export HOME="${HOME:-$_root}"
export AMENT_PREFIX_PATH="$_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
mkdir -p "$ROS_LOG_DIR"
# Stale Fast DDS shared-memory files of processes that died without cleaning up (about 140 MB each).
find /dev/shm -maxdepth 1 -name 'fastdds_*' -mmin +60 -delete 2>/dev/null || true
unset _root
