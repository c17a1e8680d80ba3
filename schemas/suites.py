"""Great Expectations suites for the raw contracts (SPEC §1.3, §1.4, §3), built from `schemas.tables`.

`build_suite(contract)` turns every `RawField` rule into one expectation, as a plain dict in the
shape `gx.ExpectationSuite(**suite)` loads. The suites for the default item catalog are committed
under `schemas/suites/` (regenerate with `python -m servio.schemas.suites`; a test keeps them equal to
what this module builds). This module does not import Great Expectations: it only writes data.

Each expectation carries `meta.reason_code` (the quarantine reason code, `<rule>:<column>`) and
`meta.rule` (the rule in words). Runtime values are GX suite parameters:

- `reporting_currencies`: `[settings.currency]`, for `currency:currency`;
- `latest_allowed_at`: ingestion time + 1 day (a tz-aware datetime), for `future:<column>`.

Two rules span several columns, which no built-in expectation expresses; the validator derives
a boolean column for each before handing the frame to GX, and the suite expects its values:

- `_has_answer` (surveys) must be true: some perception item or nps/csat/ces is present;
- `_is_conflicting_duplicate` must be false: no other row of the file has the same key and
  version time but different content. How to derive them is recorded in the expectation's meta.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .catalog import load_catalog
from .raw import TIMESTAMP_FLOOR, RawContract, RawField
from .sources import SOURCES

SUITES_DIR = Path(__file__).with_name("suites")

PARAM_REPORTING_CURRENCIES = "reporting_currencies"
PARAM_LATEST_ALLOWED_AT = "latest_allowed_at"

HAS_ANSWER = "_has_answer"
IS_CONFLICTING_DUPLICATE = "_is_conflicting_duplicate"

# SPEC §1.4: a response must answer a perception item or carry one of these scores.
PERCEPTION_PREFIX = "perc_"
SCORE_COLUMNS = ("nps", "csat", "ces")

NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
LENGTH_BETWEEN = "expect_column_value_lengths_to_be_between"


def suite_name(contract: RawContract) -> str:
    return f"{contract.source}_raw"


def suite_path(contract: RawContract) -> Path:
    return SUITES_DIR / f"{contract.source}.json"


def columns_that_answer(contract: RawContract) -> tuple[str, ...]:
    """Columns of which at least one must be present for a row to count as answered."""
    return tuple(n for n in contract.names if n.startswith(PERCEPTION_PREFIX) or n in SCORE_COLUMNS)


def version_columns(contract: RawContract) -> tuple[str, ...]:
    """The version time of a row, first non-null wins.

    An optional version column falls back to the contract's first required timestamp
    (interactions: `updated_at` defaults to `started_at`, SPEC §1.3).
    """
    version = contract.field(contract.version_column)
    if version.required:
        return (version.name,)
    fallback = next(f.name for f in contract.fields if f.kind == "timestamp" and f.required)
    return (version.name, fallback)


def _expectation(kind: str, reason_code: str, rule: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "kwargs": kwargs,
        "meta": {"reason_code": reason_code, "rule": rule},
        "notes": f"servio reason code `{reason_code}`: {rule}.",
    }


def _number(bound: float) -> int | float:
    """JSON-friendly bound: 86400 rather than 86400.0."""
    return int(bound) if float(bound).is_integer() else bound


def _range_expectation(column: str, minimum: float | None, maximum: float | None) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    if minimum is not None:
        bounds["min_value"] = _number(minimum)
    if maximum is not None:
        bounds["max_value"] = _number(maximum)
    if minimum is not None and maximum is not None:
        rule = f"{column} must be between {_number(minimum)} and {_number(maximum)}"
    elif minimum is not None:
        rule = f"{column} must be at least {_number(minimum)}"
    else:
        rule = f"{column} must be at most {bounds['max_value']}"
    return _expectation(BETWEEN, f"range:{column}", rule, column=column, **bounds)


def _field_expectations(f: RawField) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if f.required:
        found.append(
            _expectation(NOT_NULL, f"required:{f.name}", f"{f.name} is required", column=f.name)
        )
    if f.max_length is not None:
        found.append(
            _expectation(
                LENGTH_BETWEEN,
                f"length:{f.name}",
                f"{f.name} must be at most {f.max_length} characters",
                column=f.name,
                max_value=f.max_length,
            )
        )
    if f.allowed is not None:
        found.append(
            _expectation(
                IN_SET,
                f"allowed:{f.name}",
                f"{f.name} must be one of {', '.join(f.allowed)}",
                column=f.name,
                value_set=list(f.allowed),
            )
        )
    if f.minimum is not None or f.maximum is not None:
        found.append(_range_expectation(f.name, f.minimum, f.maximum))
    if f.kind == "currency":
        found.append(
            _expectation(
                IN_SET,
                f"currency:{f.name}",
                f"{f.name} must be the reporting currency",
                column=f.name,
                value_set={"$PARAMETER": PARAM_REPORTING_CURRENCIES},
            )
        )
    if f.kind == "timestamp":
        found.append(
            _expectation(
                BETWEEN,
                f"too_old:{f.name}",
                f"{f.name} must not be before {TIMESTAMP_FLOOR}",
                column=f.name,
                min_value=TIMESTAMP_FLOOR,
            )
        )
        found.append(
            _expectation(
                BETWEEN,
                f"future:{f.name}",
                f"{f.name} must not be after the ingestion time + 1 day",
                column=f.name,
                max_value={"$PARAMETER": PARAM_LATEST_ALLOWED_AT},
            )
        )
    return found


def _row_expectations(contract: RawContract) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    answers = columns_that_answer(contract)
    if answers:
        rule = "a response must answer a perception item or carry nps, csat or ces"
        has_answer = _expectation(IN_SET, "no_answer", rule, column=HAS_ANSWER, value_set=[True])
        has_answer["meta"]["derived"] = {"any_present": list(answers)}
        has_answer["description"] = f"{rule} (derived column {HAS_ANSWER} must be true)"
        found.append(has_answer)
    versions = version_columns(contract)
    rule = (
        f"rows with the same {contract.key} and version time ({' or '.join(versions)}) "
        "must have the same content"
    )
    duplicate = _expectation(
        IN_SET,
        f"conflicting_duplicate:{contract.key}",
        rule,
        column=IS_CONFLICTING_DUPLICATE,
        value_set=[False],
    )
    duplicate["description"] = f"{rule} (derived column {IS_CONFLICTING_DUPLICATE} must be false)"
    duplicate["meta"]["derived"] = {
        "key": contract.key,
        "version": list(versions),
        "content": list(contract.names),
    }
    found.append(duplicate)
    return found


def _parameters(expectations: list[dict[str, Any]]) -> set[str]:
    return {
        value["$PARAMETER"]
        for e in expectations
        for value in e["kwargs"].values()
        if isinstance(value, dict) and "$PARAMETER" in value
    }


def build_suite(contract: RawContract) -> dict[str, Any]:
    """The expectation suite of one raw contract, as `gx.ExpectationSuite(**suite)` loads it."""
    expectations = [e for f in contract.fields for e in _field_expectations(f)]
    expectations += _row_expectations(contract)
    return {
        "name": suite_name(contract),
        "expectations": expectations,
        "meta": {
            "servio": {
                "source": contract.source,
                "key": contract.key,
                "columns": list(contract.names),
                "parameters": sorted(_parameters(expectations)),
                "generated_by": "python -m servio.schemas.suites",
            }
        },
    }


def suite_json(contract: RawContract) -> str:
    """The committed text of a suite: stable key order, one trailing newline."""
    return json.dumps(build_suite(contract), indent=2, ensure_ascii=False) + "\n"


def load_suite(contract: RawContract) -> dict[str, Any]:
    """The committed suite when it covers this contract's columns, else one built from it.

    A deployment with its own item catalog has other survey columns than the committed
    suite; it gets the suite of its own contract.
    """
    path = suite_path(contract)
    if path.exists():
        committed: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if committed.get("meta", {}).get("servio", {}).get("columns") == list(contract.names):
            return committed
    return build_suite(contract)


def default_contracts() -> tuple[RawContract, ...]:
    catalog = load_catalog()
    return tuple(source.contract(catalog) for source in SOURCES.values())


def write_suites(directory: Path = SUITES_DIR) -> list[Path]:
    """(Re)write the committed suites for the default item catalog."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for contract in default_contracts():
        path = directory / f"{contract.source}.json"
        path.write_text(suite_json(contract), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_suites():
        print(written_path)
