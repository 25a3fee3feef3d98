"""Artifacts on disk: the typed records of manifests and results, the layout, hashes, manifests, and the one way an artifact is built."""
