"""Batch jobs of the StreamFlow feature platform and the settings they share."""
