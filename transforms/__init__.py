"""Pure Polars transforms: LazyFrame in, LazyFrame out; no I/O, no Prefect, no collect()."""
