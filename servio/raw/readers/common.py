"""What every format reader shares: the rejection, record numbering, the contract's columns."""

from __future__ import annotations

import polars as pl

from servio.schemas.raw import SOURCE_ROW

COPY_BLOCK_BYTES = 8 * 1024 * 1024


class FileRejected(Exception):
    """The whole file is unusable; `code` is the quarantine reason code, `detail` servio's
    own words (rule, column, record number; never a value of a non-contract column)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def numbered(frame: pl.DataFrame, first_row: int) -> pl.DataFrame:
    return frame.with_row_index(SOURCE_ROW, offset=first_row).with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64)
    )


def kept_names(names: list[str], wanted: frozenset[str]) -> dict[str, int]:
    """Contract column → its position among `names` (trimmed, lower-cased). A repeated
    contract column is a rejection (which value was meant is unknowable); a repeated or
    empty unknown name is nothing to servio: it is not read."""
    kept: dict[str, int] = {}
    for position, raw_name in enumerate(names):
        name = raw_name.strip().lower()
        if name not in wanted:
            continue
        if name in kept:
            raise FileRejected("duplicate_header", f"column {name!r} appears more than once")
        kept[name] = position
    return kept


def is_io_error(exc: BaseException) -> bool:
    """An operating-system failure (permission, vanished file, EIO, full disk), as opposed to
    a library's OSError about the content (gzip, pyarrow: no errno)."""
    return isinstance(exc, OSError) and exc.errno is not None
