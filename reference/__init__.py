"""Trusted NumPy reference implementations and the course's example submissions."""
