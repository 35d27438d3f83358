"""ROS 2 layer of tqdm: the segmentation node and the rosbag tools, thin wrappers over tqdm_core."""
