"""Shared pytest configuration: pytester runs the pytest plugin's tests in a sub-pytest."""

pytest_plugins = ["pytester"]
