"""The package version, in one place below every layer (model cards and the Hub record it)."""

__version__ = "0.1.0"
