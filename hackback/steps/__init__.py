"""The steps, side by side: each makes one kind of artifact (or a batch of runs) through the step protocol."""
