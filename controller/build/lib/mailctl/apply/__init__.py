"""Side effects on files and commands: the subprocess wrapper, writes, the apply transaction."""
