"""Test-wide settings: every test process is network-safe even when pytest is started by hand."""
import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# ROS_PIP.md section 3: discovery on this host only, loopback-only Fast DDS profile. Forced, not defaulted:
# a test must never send traffic anywhere but 127.0.0.1.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(REPO_ROOT / 'config' / 'fastdds_localhost.xml')
os.environ.setdefault('ROS_LOG_DIR', str(REPO_ROOT / 'runs' / 'ros_log'))
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
os.environ.setdefault('OMP_NUM_THREADS', '2')
