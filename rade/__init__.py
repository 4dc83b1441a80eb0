"""The `rade` command and its client library: thin, it parses arguments and calls the packages below."""

__version__ = "0.3.0"
