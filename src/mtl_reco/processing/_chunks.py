"""Small helpers for streams of DataFrame chunks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pandas as pd


def non_empty(frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Yield the non-empty frames; if all are empty, yield the last one once.

    A table must yield at least one frame so that its columns (and dtypes)
    survive even when every row was filtered out.
    """
    last: pd.DataFrame | None = None
    yielded = False
    for frame in frames:
        if len(frame):
            yielded = True
            yield frame
        else:
            last = frame
    if not yielded and last is not None:
        yield last
