"""Bag tools: make, replay, record and read rosbag2 bags for segmentation evaluation.

`make_bag` and `bag_reader` need only `rosbags`; `replay` and `record` need rclpy and are imported
from their modules.
"""
from tqdm_ros.bag.bag_reader import BagError, iter_labeled_frames, LabeledFrame, open_bag
from tqdm_ros.bag.bag_reader import summarize_bag
from tqdm_ros.bag.make_bag import find_frames, make_bag, MakeBagConfig

__all__ = ['BagError', 'find_frames', 'iter_labeled_frames', 'LabeledFrame', 'make_bag',
           'MakeBagConfig', 'open_bag', 'summarize_bag']
