"""hackback's tasks (`invoke --list`). They live in hackback/tasks.py so the
installed `hackback` command runs the very same ones."""
from hackback.tasks import ns

__all__ = ["ns"]
