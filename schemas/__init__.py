"""The single source of truth for servio's data: raw export contracts, curated table
schemas, the survey item catalog and the Great Expectations suites derived from them."""
