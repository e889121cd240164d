"""The settings watcher."""
