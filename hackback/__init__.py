"""hackback: gem5 x86 full-system checkpoints taken after boot, restored with new scripts."""

__version__ = "0.2.0"
