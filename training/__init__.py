"""Training, evaluation and plotting scripts for tqdm models (METHOD.md sections 6 and 7), outside tqdm_core."""
