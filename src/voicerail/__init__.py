"""voicerail: a production runtime for voice AI agents on phone lines."""

__version__ = "0.1.0"
