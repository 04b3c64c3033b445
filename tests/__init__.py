"""kvmsim's test suite (a package, so that test modules share helpers such as cli_support)."""
