"""Agents built on Stable-Baselines3, and the module that runs one experiment."""
