"""Simulated callers that speak the Twilio Media Streams protocol over real WebSockets."""
