"""The ASGI server: Twilio webhooks, the media WebSocket, the REST API."""
