"""The steps of a run, as plain functions over one `RunContext` (`context`): discover, stage
one file, publish an ingest, the snapshot of one date, the Data Docs, maintenance — and the
one sequence that runs them (`sequence.run`), which every entry point calls. No Prefect here:
`servio.flows` runs the same steps as Prefect tasks by passing its executor."""
