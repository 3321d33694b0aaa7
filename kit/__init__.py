"""kit: from a competition folder to a checked submission.csv in one command."""

__version__ = "0.1.0"
