"""One setup for both installs: pip and colcon (ament_python).

colcon reads package.xml and runs this file; the ament resource marker, package.xml, launch/ and config/
land under share/tqdm_ros, and setup.cfg puts the executables in lib/tqdm_ros where `ros2 run` and
`ros2 launch` look for them. pip ignores those colcon-only paths and puts the console scripts on PATH.

No Python dependencies are declared: a ROS workspace takes numpy, OpenCV and the ROS packages from the
distro (pip would add a second OpenCV and numpy beside them), so they come from requirements.txt in a
pip-only install (`pip install -r requirements.txt` first, then `pip install --no-deps .`) and from
rosdep plus the pip lines README names in a workspace.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = 'tqdm_ros'

setup(
    name=PACKAGE_NAME,
    version='0.1.0',
    description='tqdm (ECCV 2024) domain-generalized semantic segmentation for ROS 2 robots and cars',
    license='Apache-2.0 (code); CC-BY-NC-4.0 (the bundled default model in tqdm_core/weights)',
    python_requires='>=3.10',
    packages=find_packages(include=['tqdm_core', 'tqdm_core.*', 'tqdm_ros', 'tqdm_ros.*',
                                    'training', 'training.*']),
    package_data={
        'tqdm_core': ['weights/*.pt', 'weights/*.md'],
        'training': ['configs/*.yaml'],
    },
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE_NAME]),
        ('share/' + PACKAGE_NAME, ['package.xml']),
        ('share/' + PACKAGE_NAME + '/launch', glob('launch/*.py')),
        ('share/' + PACKAGE_NAME + '/config', glob('config/*.yaml') + glob('config/*.xml')
         + glob('config/*.rviz')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    entry_points={
        'console_scripts': [
            'segmentation_node = tqdm_ros.segmentation_node:main',
            'tqdm-bag = tqdm_ros.bag.cli:main',
            'tqdm_train = training.train:main',
            'tqdm_evaluate = training.evaluate:main',
            'tqdm_plot_log = training.plot_log:main',
        ],
    },
)
