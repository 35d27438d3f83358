"""The tqdm model, one concept per file."""
