"""Methods we compare against, written against the same Method interface. Importing registers them."""

from piaa.baselines import giaa, ridge  # noqa: F401
