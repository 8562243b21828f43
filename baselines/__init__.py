"""Methods we compare against, written against the same Method interface (registered in piaa/registry.py)."""
