"""Handing a call to a human with its context.

* ``rules.py``: when (explicit request, misunderstanding, intent, sentiment,
  customer tier, the LLM's tool), as a pure policy.
* ``summary.py``: the handoff summary built at handoff time.
* ``twilio_transfer.py``: warm (conference, whispered summary) and cold transfer
  through Twilio's REST API, with typed outcomes and fallbacks.
* ``transfers.py``: warm transfers as records in the call state store, so any
  worker settles Twilio's callbacks, once.
* ``contextual.py``: CRM recognition, slots filled from the CRM and handoff
  summaries for the flow engine.
"""
