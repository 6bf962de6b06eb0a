"""Compliance in the call path: PCI pause, redaction (and, as they land, disclosure,
consent, retention, erasure, the audit log and ``voicerail gates``)."""
