"""The `sandbox` command line: thin Typer commands over the sandbox library."""
