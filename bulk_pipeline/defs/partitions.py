"""One dynamic partition per imported file, keyed by its import id (see ``imports.py``)."""

import dagster as dg

imports_partitions = dg.DynamicPartitionsDefinition(name="imports")
