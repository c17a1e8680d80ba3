"""Tools around servio, not part of a run: the sample-export generator (`generate`), the
fault harness's runner (`faults`), and what tests and benchmarks share to drive servio from
outside (`harness`)."""
