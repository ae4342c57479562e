"""The chaos suite: RELIABILITY.md's fault scenarios, every request accounted."""
