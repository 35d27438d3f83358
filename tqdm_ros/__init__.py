"""ROS 2 layer of tqdm: the segmentation node and rosbag tools, thin wrappers over tqdm_core."""
