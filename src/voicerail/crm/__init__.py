"""The CRM seam: connectors, the context gate, and writes through a transactional outbox.

* ``model.py``: the connector interface, writes and their idempotency keys.
* ``gate.py``: which customer fields the agent may see (deny by default).
* ``lookup.py``: the caller lookup at call start, inside a deadline.
* ``embedded.py`` (SQLite, the default), ``webhook.py`` (signed), ``hubspot.py``,
  ``salesforce.py``: the connectors.
* ``outbox.py`` (SQLite) and ``outbox_pg.py`` (PostgreSQL): writes recorded with the
  call's state; ``relay.py`` delivers them exactly once per key at the CRM.
"""
