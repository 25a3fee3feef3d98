"""The step protocol every step implements, and the per-task context it is given."""
