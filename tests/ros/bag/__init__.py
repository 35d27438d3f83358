"""Tests of the bag tools (tqdm_ros.bag)."""
