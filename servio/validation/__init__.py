"""Validation of standardised raw rows (SPEC §3): the row rules and the `Validator` seam
(`rules`), the Great Expectations suite behind it (`gx`, the only module importing GX), its
per-file results (`results`) and the Data Docs built from them (`datadocs`)."""

from servio.validation.rules import RequiredOnlyValidator, RuleCheck, Validator

__all__ = ["RequiredOnlyValidator", "RuleCheck", "Validator"]
