"""An embedded CRM that speaks HubSpot's CRM v3 objects API, for demos, tests and benchmarks.

Start one in-process with ``server.start_in_thread``, as a blocking server with ``server.serve``
(``python -m bulk_pipeline.sandbox``), or let ``launcher.ensure_sandbox`` find or start a shared
one in the background. Its admin view (stats, reset, fault injection) lives under ``/_sandbox/``.
"""
