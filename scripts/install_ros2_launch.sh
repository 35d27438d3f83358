#!/usr/bin/env bash
# `ros2 launch` and the `ros2` CLI for a pip-only ROS 2 install, from sources:
#
#   bash scripts/install_ros2_launch.sh <sources.tar.gz> <prefix>
#
# The launch system and CLI (launch, launch_ros, ros2launch, ros2cli and its verbs,
# rosidl_runtime_py) are pure Python but not on the package registries. The tarball holds the
# repositories launch/, launch_ros/, ros2cli/ and rosidl_runtime_py/ side by side:
# ../shared/vendor/ros2-launch-tooling-src.tar.gz, or `tar czf` of clones at your distro's tags.
# They are installed with pip into <prefix>, which is layered over the venv with PYTHONPATH (the
# venv is not changed); the script ends by printing the variables to export.
#
# No network: pip installs only the extracted folders (--no-index --no-deps); the registry
# dependencies (osrf-pycommon psutil argcomplete lark-parser) must already be in the venv.
# Idempotent: a prefix whose stamp matches this tarball, this script and this interpreter is
# left as it is. The prefix is built aside and renamed into place, so an interrupted or
# concurrent run never leaves a half-built one. PYTHON picks the interpreter (default: python).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <ros2 launch tooling sources .tar.gz> <install prefix>" >&2
  exit 2
fi
PYTHON=${PYTHON:-python}
tarball=$1
if [ ! -f "$tarball" ]; then
  echo "install_ros2_launch.sh: no sources tarball at '$tarball'" >&2
  exit 1
fi
prefix=$("$PYTHON" -c 'import os, sys; print(os.path.abspath(os.path.expanduser(sys.argv[1])))' "$2")
# Install order: each package after what it imports.
packages=(rosidl_runtime_py launch/launch launch/launch_xml launch/launch_yaml launch_ros/launch_ros
          ros2cli/ros2cli ros2cli/ros2pkg ros2cli/ros2run ros2cli/ros2node ros2cli/ros2topic
          ros2cli/ros2service ros2cli/ros2param ros2cli/ros2lifecycle launch_ros/ros2launch)
stamp_file=.ros2_launch_tooling

# Same tarball, same recipe and same interpreter give the same prefix: nothing to do.
stamp=$("$PYTHON" - "$tarball" "${BASH_SOURCE[0]}" <<'EOF'
import hashlib, sys
digest = hashlib.sha256()
for path in sys.argv[1:]:
    with open(path, 'rb') as file:
        digest.update(file.read())
digest.update(f'{sys.version}\n{sys.executable}'.encode())
print(digest.hexdigest())
EOF
)
purelib=$("$PYTHON" -c 'import sys, sysconfig
print(sysconfig.get_path("purelib", vars={"base": sys.argv[1], "platbase": sys.argv[1]}))' "$prefix")

print_usage() {
  echo "ros2 launch tooling in $prefix; to use it (with a colcon-built workspace's install/<package>):"
  echo "  export PYTHONPATH=$purelib\${PYTHONPATH:+:\$PYTHONPATH}"
  echo "  export AMENT_PREFIX_PATH=$prefix\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
  echo "  $PYTHON $prefix/bin/ros2 launch <package> <file.launch.py>"
}

if [ "$(cat "$prefix/$stamp_file" 2>/dev/null)" = "$stamp" ]; then
  echo "already installed"
  print_usage
  exit 0
fi

missing=$("$PYTHON" -c 'import importlib.util
needed = ("osrf_pycommon", "psutil", "argcomplete", "lark")
print(" ".join(name for name in needed if importlib.util.find_spec(name) is None))')
if [ -n "$missing" ]; then
  echo "install_ros2_launch.sh: $PYTHON lacks $missing; pip install osrf-pycommon psutil" \
       "argcomplete lark-parser (requirements.txt installs them)" >&2
  exit 1
fi
# Never overwrite a folder this script did not make.
if [ -e "$prefix" ] && [ ! -f "$prefix/$stamp_file" ] && [ -n "$(ls -A "$prefix" 2>/dev/null)" ]; then
  echo "install_ros2_launch.sh: '$prefix' exists and was not made by this script; give a new" \
       "or empty folder" >&2
  exit 1
fi

mkdir -p "$(dirname "$prefix")"
# Beside the prefix, so the final rename stays on one file system.
work=$(mktemp -d "$prefix.partial.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/sources"
tar -xzf "$tarball" -C "$work/sources"
folders=()
for package in "${packages[@]}"; do
  if [ ! -f "$work/sources/$package/setup.py" ]; then
    echo "install_ros2_launch.sh: '$tarball' has no $package/setup.py" >&2
    exit 1
  fi
  folders+=("$work/sources/$package")
done
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
  --no-build-isolation --no-cache-dir --prefix "$work/prefix" "${folders[@]}"

# launch_ros.actions imports composition_interfaces.srv (an interface package that is not on the
# registries) for its composable-node actions only: without a real one, a stand-in with the
# names that import touches lets `ros2 launch` start ordinary nodes.
if ! "$PYTHON" -c 'import sys, composition_interfaces.srv as srv
sys.exit(1 if getattr(srv, "STAND_IN", False) else 0)' 2>/dev/null; then
  stand_in="$work/prefix/${purelib#"$prefix"/}/composition_interfaces"
  mkdir -p "$stand_in"
  echo '"""Stand-in for composition_interfaces (see srv.py)."""' > "$stand_in/__init__.py"
  cat > "$stand_in/srv.py" <<'EOF'
"""Stand-in for composition_interfaces.srv, not the real package (install_ros2_launch.sh).

launch_ros.actions names these service types when it is imported; only the composable-node
actions use them, so launch files that start ordinary nodes work.
"""
STAND_IN = True


class LoadNode:
    class Request:
        pass

    class Response:
        pass


class UnloadNode(LoadNode):
    pass


class ListNodes(LoadNode):
    pass
EOF
fi
echo "$stamp" > "$work/prefix/$stamp_file"

if [ "$(cat "$prefix/$stamp_file" 2>/dev/null)" = "$stamp" ]; then
  echo "already installed (by another run meanwhile)"
  print_usage
  exit 0
fi
if [ -e "$prefix" ]; then
  mv -T "$prefix" "$work/previous"  # an empty folder or an older install of this script
fi
if ! mv -T "$work/prefix" "$prefix" 2>/dev/null; then
  # Another run put a prefix in place meanwhile: fine if it is this one.
  if [ "$(cat "$prefix/$stamp_file" 2>/dev/null)" != "$stamp" ]; then
    echo "install_ros2_launch.sh: could not move the new install to '$prefix'" >&2
    exit 1
  fi
fi
echo "installed"
print_usage
