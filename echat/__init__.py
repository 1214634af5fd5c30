"""echat: a small, fast, trustworthy chat server speaking the e_chat /v1 API."""

__version__ = "0.1.0"
