"""Runnable experiments."""
