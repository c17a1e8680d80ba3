"""A source's rows planned into files: which rows carry a defect, which are repeated."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from numpy.typing import NDArray

from servio.tools.generate.defects import Defect
from servio.tools.generate.files import ExportFile
from servio.tools.generate.options import CSV_FORMATS, TEXT_FORMATS, Bool, Int

# Sources


@dataclass
class SourcePlan:
    """One source's export files, each with a recipe for its typed rows.

    A file's rows carry helper columns saying how each row is written: `_defect`, `_ts_style`
    (and `_bool_style`). Rows are built per file, inside the writer, so files are built in
    parallel and only a few are in memory at once.
    """

    files: list[tuple[ExportFile, int, Callable[[], pl.DataFrame]]]  # spec, row count, rows
    defects: tuple[Defect, ...]
    timestamps: tuple[str, ...]
    booleans: tuple[str, ...]
    clean: Bool  # per generated record: carries no defect
    id_width: int
    counts: dict[str, int] = field(default_factory=dict)
    revenue_cents: int = 0  # ground truth: revenue of the latest valid versions

    @property
    def rows(self) -> int:
        return sum(count for _, count, _ in self.files)


def _assign_defects(
    rng: np.random.Generator,
    files: list[ExportFile],
    file_of_row: Int,
    bad: int,
    defects: Sequence[Defect],
) -> NDArray[np.int32]:
    """Pick `bad` records and give each a defect its file can carry (index into defects; -1 = clean).

    Defects rotate within each file, so every kind appears once there are enough bad rows.
    """
    n = len(file_of_row)
    out = np.full(n, -1, dtype=np.int32)
    if bad <= 0 or n == 0:
        return out
    victims = np.sort(rng.choice(n, size=min(bad, n), replace=False))
    # Text that is not a number or a date needs a text column: CSV has nothing else; JSON and
    # Parquet keep their native types unless no CSV file exists to carry those defects.
    untyped_in = CSV_FORMATS if any(f.fmt in CSV_FORMATS for f in files) else TEXT_FORMATS
    for i, spec in enumerate(files):
        allowed = [
            k
            for k, d in enumerate(defects)
            if (d.typed or spec.fmt in untyped_in) and (d.needs is None or d.needs in spec.columns)
        ]
        in_file = victims[file_of_row[victims] == i]
        start = int(rng.integers(0, len(allowed)))
        out[in_file] = np.asarray(allowed, dtype=np.int32)[
            (np.arange(len(in_file)) + start) % len(allowed)
        ]
    return out


def _with_duplicates(
    rng: np.random.Generator, candidates: Int, count: int, bounds: Int, file_of_row: Int
) -> tuple[Int, int]:
    """Row order of a file set where `count` records (among candidates) appear twice.

    Returns the record behind each written row, and how many copies were added; each copy
    sits at a random place in its record's file.
    """
    n = len(file_of_row)
    copies = np.sort(rng.choice(candidates, size=min(count, len(candidates)), replace=False))
    file = file_of_row[copies]
    place = bounds[file] + rng.integers(0, bounds[file + 1] - bounds[file] + 1)
    return np.insert(np.arange(n, dtype=np.int64), place, copies), len(copies)
