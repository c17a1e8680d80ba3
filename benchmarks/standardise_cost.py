"""CPU of `transforms.standardise` per chunk (issues #18 and #20): a chunk of N rows of every
contract field filled with a valid value, collected R times; process CPU time (all threads).

The small chunk shows the fixed cost per file (planning); the large one the cost per value.

    .venv/bin/python -m benchmarks.standardise_cost [--rows 10 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import polars as pl

from servio.schemas.catalog import load_catalog
from servio.schemas.raw import SOURCE_ROW, RawContract
from servio.schemas.sources import SOURCES
from servio.transforms.standardise import standardise

VALID = {
    "timestamp": "2026-11-20T09:15:00Z",
    "number": "12.5",
    "integer": "4",
    "boolean": "yes",
    "decimal": "19.99",
    "currency": "eur",
}


def chunk(contract: RawContract, rows: int) -> pl.DataFrame:
    columns = {f.name: [VALID.get(f.kind, " text ")] * rows for f in contract.fields}
    return pl.DataFrame(columns).with_row_index(SOURCE_ROW, offset=1).cast({SOURCE_ROW: pl.Int64})


def cpu_ms(frame: pl.DataFrame, contract: RawContract, repeat: int) -> float:
    standardise(frame.lazy(), contract, "Europe/Berlin").collect()  # warm-up
    start = time.process_time()
    for _ in range(repeat):
        standardise(frame.lazy(), contract, "Europe/Berlin").collect()
    return (time.process_time() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    catalog = load_catalog()
    print(f"polars {pl.__version__}, {pl.thread_pool_size()} threads")
    for name, source in SOURCES.items():
        contract = source.contract(catalog)
        for rows in args.rows:
            ms = cpu_ms(chunk(contract, rows), contract, args.repeat)
            print(f"{name:13s} {len(contract.fields):3d} fields {rows:>9,} rows {ms:9.1f} ms CPU")


if __name__ == "__main__":
    main()
