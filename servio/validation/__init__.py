"""Validation of standardised raw rows (SPEC §3): the row rules and the `Validator` seam
(`rules`), the Great Expectations suite behind it (`gx`, which runs GX), the batch GX checks
and its split back per file (`batch`, no GX import), its per-file results (`results`) and the
Data Docs built from them (`datadocs`)."""

from servio.validation.rules import RequiredOnlyValidator, RuleCheck, Validator

__all__ = ["RequiredOnlyValidator", "RuleCheck", "Validator"]
