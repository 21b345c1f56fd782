"""The saga sandbox library: engines, packaging, deploy, orders client and saga timelines."""

__version__ = "0.1.0"
