"""Ali-CCP's processed column layout, for code that reproduces it.

The ``ali_ccp`` source itself is the description ``formats/ali_ccp.yml``;
these names are read from it for the simulator and the raw Tianchi reader,
which emit the same columns.
"""

from __future__ import annotations

from mtl_reco.sources.formats import builtin_format

FORMAT = builtin_format("ali_ccp")
LABELS = FORMAT.labels
SPARSE = FORMAT.sparse
"""The 23 sparse fields, in the processed files' column order."""
DENSE = FORMAT.dense
"""The 8 dense fields (``D<field>`` = value attached to that field)."""
DEFAULT_TASKS = FORMAT.default_tasks
