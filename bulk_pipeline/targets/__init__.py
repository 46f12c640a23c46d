"""CRM targets: one narrow interface (``base.py``), one package per CRM, one registry of names.

Callers open a target by registry name (``open_target(name)``) and get a ready
:class:`~bulk_pipeline.targets.base.Target`; nothing outside a CRM's package and the registry
knows which CRM it is.
"""

from bulk_pipeline.targets.base import (
    BatchResult,
    Capabilities,
    CrmRecord,
    Failed,
    FailureKind,
    Target,
    Written,
)
from bulk_pipeline.targets.registry import (
    DEFAULT_TARGET,
    TARGET_NAMES,
    entry,
    open_async_target,
    open_target,
)

__all__ = [
    "DEFAULT_TARGET",
    "TARGET_NAMES",
    "BatchResult",
    "Capabilities",
    "CrmRecord",
    "Failed",
    "FailureKind",
    "Target",
    "Written",
    "entry",
    "open_async_target",
    "open_target",
]
