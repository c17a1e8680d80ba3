"""Tools around servio, not part of a run: the sample-export generator (`generate`) and the
fault harness's runner (`faults`)."""
