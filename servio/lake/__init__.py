"""The curated lake: the only code that reads or writes `curated_root` (ARCHITECTURE.md).

`Lake` (lake.py) is the one way in — scans, staging, the run lock, publications, recovery,
maintenance — for a local folder and `s3://` alike; `publication` makes a publication
exactly-once across Delta tables, `delta` speaks the table format (delta-rs), `catalog`
writes the DuckDB catalog of the latest publication.
"""

from servio.lake.files import PartitionRows, PartitionValue, TableChange, write_partition_file
from servio.lake.lake import Lake, LakeBusy

__all__ = [
    "Lake",
    "LakeBusy",
    "PartitionRows",
    "PartitionValue",
    "TableChange",
    "write_partition_file",
]
