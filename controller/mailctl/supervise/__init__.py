"""Process supervision: the per-process state machine and the supervisor."""
