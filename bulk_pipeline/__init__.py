"""bulk_pipeline: bulk-load messy spreadsheets and exports into CRMs, every row accounted for.

An import holds a chunk of rows at a time, so its memory should not grow with the file; the
allocators of the libraries that hold those chunks are told here, before any of them loads, to
give freed memory back at once instead of keeping it for later (polars' jemalloc keeps freed
pages for seconds, Arrow's mimalloc pool until asked): otherwise each step's high-water mark
would stay with the process through the next step. Set the variables yourself to override.
"""

import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
