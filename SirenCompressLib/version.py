"""The library version (its own module, so that modules can read it without importing the package)."""

__version__ = "0.8.0"
