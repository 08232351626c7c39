"""The package version, in its own module so that modules can record it without importing the package."""
__version__ = "0.1.0"
