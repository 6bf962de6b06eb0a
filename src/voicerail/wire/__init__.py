"""Sans-I/O wire protocols: parse and serialize messages, enforce their order, no I/O.

- :mod:`voicerail.wire.twilio_messages`: Twilio Media Streams messages (both
  directions) and their stateless ``parse_*`` / ``serialize*`` functions.
- :mod:`voicerail.wire.twilio`: :class:`~voicerail.wire.twilio.TwilioStreamProtocol`,
  the server side of one Media Stream (re-exports every message type).
- :mod:`voicerail.wire.telnyx`, :mod:`~voicerail.wire.plivo`,
  :mod:`~voicerail.wire.vonage`: the other providers' media streams, and
  :mod:`voicerail.wire.browser`: the browser call page's socket; each a
  :class:`~voicerail.wire.transport.MediaTransport`.

Nothing here imports asyncio, sockets or provider SDKs: adapters feed text in and
send the text they are handed.
"""
