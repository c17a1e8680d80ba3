"""Fault points: named places in the code where a test can kill, pause or break a run.

`checkpoint(name, **details)` is a no-op unless a test asked for something at that point:
- `SERVIO_KILL_AT=<name>` (or `<name>:<n>`, the n-th hit in this process): the process
  SIGKILLs itself — no cleanup, no `finally`, exactly like a power cut or the OOM killer;
  with `SERVIO_KILL_AFTER=<other>`, hits count only once `<other>` was reached;
- `SERVIO_PAUSE_AT=<name>:<seconds>`: it sleeps there (holds the lock for a while);
- `inject(name, action)` (in this process): `action(**details)` runs there — it may raise
  (a full disk, a Rust panic) or change a file, instead of a test patching servio's code.

The runner that kill tests start (`python -m servio.tools.faults`) is a tool, not part of
the runtime; this module is the tiny hook the runtime calls.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

KILL_AT = "SERVIO_KILL_AT"
KILL_AFTER = "SERVIO_KILL_AFTER"
PAUSE_AT = "SERVIO_PAUSE_AT"  # <name>:<seconds>: sleep there (hold the lock for a while)
_hits: Counter[str] = Counter()
_reached: set[str] = set()

# The kill points, in the order a run meets them (tests iterate this).
CHECKPOINTS = (
    "file_staged",  # steps.staging: one staged Parquet file written (outside the lock)
    "lock_taken",  # lake.Lake.lock: the lock is ours
    "partition_staged",  # lake.publication: one new data file staged, outside every table
    "before_publication_commit",  # lake.publication: all staged, plan not yet written
    "after_publication_commit",  # lake.publication: plan written (commit point), no commit
    "before_table_commit",  # lake.publication: a table's files in its folder, not committed
    "between_table_commits",  # lake.publication: after each table's Delta commit (or skip)
    "after_publication_record",  # lake.publication: publications row added, plan still there
    "after_ingest_publish",  # steps.publish: tables + ledger published
    "after_snapshot_publish",  # steps.snapshot: snapshot partitions published
)
# Further points where in-process tests inject a failure (details passed to the action).
INJECTION_POINTS = (
    "discovered",  # steps.discover: the files to stage are known (files=)
    "file_read",  # steps.read: the first chunk of a file is read (landed=)
    "standardising",  # steps.read: a chunk is about to be standardised (landed=)
    "writing_staged_file",  # steps.staging: a staged part is about to be written (landed=)
    "writing_partition_file",  # lake: a new partition file is about to be written (path=)
    "rendering_data_docs",  # steps.datadocs: the Data Docs are about to be rendered
)
Action = Callable[..., None]
_injected: dict[str, list[Action]] = {}


@contextlib.contextmanager
def inject(name: str, action: Action) -> Iterator[None]:
    """While the block runs, call `action(**details)` whenever this process reaches `name`."""
    if name not in CHECKPOINTS + INJECTION_POINTS:
        raise ValueError(f"no fault point named {name!r}")
    _injected.setdefault(name, []).append(action)
    try:
        yield
    finally:
        _injected[name].remove(action)


def checkpoint(name: str, **details: Any) -> None:
    """Run injected actions; sleep if SERVIO_PAUSE_AT asks; die if SERVIO_KILL_AT asks."""
    for action in list(_injected.get(name, ())):
        action(**details)
    pause = os.environ.get(PAUSE_AT)
    if pause and pause.partition(":")[0] == name:
        time.sleep(float(pause.partition(":")[2] or 1))
    _reached.add(name)
    wanted = os.environ.get(KILL_AT)
    if not wanted:
        return
    target, _, nth = wanted.partition(":")
    if target != name:
        return
    after = os.environ.get(KILL_AFTER)
    if after and after not in _reached:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
