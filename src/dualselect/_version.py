"""The package version (one place; pyproject.toml's ``version`` must equal it, see tests)."""

__version__ = "0.1.0"
