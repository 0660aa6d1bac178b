"""The package version, in a module of its own: modules inside the package read it here
without importing the package (whose ``__init__`` imports them).
"""

__version__ = "0.1.0"
