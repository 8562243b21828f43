"""Rater datasets → tasks: the format, native loaders, sampling and the demo simulator."""
