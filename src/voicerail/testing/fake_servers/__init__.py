"""In-process servers that speak providers' documented wire protocols, for tests.

``openai`` (chat completions, speech, models), ``deepgram`` (live STT),
``elevenlabs`` and ``cartesia`` (streaming TTS), ``crm`` (HubSpot, Salesforce and
a signed-webhook receiver): each module has a ``Fake…``
dataclass that scripts behaviour and records requests, and a ``run_fake_…``
async context manager serving it on 127.0.0.1 at a free port.
"""
