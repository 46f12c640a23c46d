"""An embedded CRM that speaks several vendors' APIs (dialects), for demos, tests and benchmarks.

One server serves every dialect, each under its own path prefix: HubSpot's CRM v3 objects
(``/crm/v3/...``) and Pipedrive's API v2 and v1 (``/api/v2/...``, ``/api/v1/...``). What the
dialects share (HTTP, the SQLite file, fault injection, counters, the admin view under
``/_sandbox/``) lives here; each vendor's paths, credentials, limits, error bodies and tables
live in its package (``hubspot/``, ``pipedrive/``). ``dialects.py`` lists them and says how to
add one.

Start one in-process with ``server.start_in_thread``, as a blocking server with ``server.serve``
(``python -m bulk_pipeline.sandbox``), or let ``launcher.ensure_sandbox`` find or start a shared
one in the background.
"""
