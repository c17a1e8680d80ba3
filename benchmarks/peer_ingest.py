"""Raw CSV exports → the curated `interactions` and `survey_responses` rows, in DuckDB SQL.

An independent peer of `servio.raw.landing` + `transforms.standardise` + `servio.validation` +
`transforms.curate`, written from SPEC §1–§4 for the benchmark (`benchmarks/run.py`). It makes
the same keep/drop decision per row (type failures, the suite's rules, conflicting duplicates
within a file) but keeps no reasons, and it does not build the quarantine table's records.
Only CSV is read (the benchmark's input); the survey score columns are left to
`benchmarks/peer_quality.py`, which scores responses from their raw answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import duckdb

from servio.config import Settings
from servio.schemas.channels import CHANNELS
from servio.schemas.raw import INTERACTIONS_RAW, RawContract, RawField

# The ISO-8601 shapes `transforms.standardise` accepts: date, optional time, optional offset.
_ISO = (
    r"^(\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?))?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
_TRUE = ("true", "1", "yes", "y")
_FALSE = ("false", "0", "no", "n")


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _csv(path: str) -> str:
    return (
        f"read_csv({text(path)}, header = true, all_varchar = true, delim = ',', "
        "quote = '\"', escape = '\"', auto_detect = false, columns = {cols})"
    )


def _header(con: duckdb.DuckDBPyConnection, path: str) -> list[str]:
    """The file's column names as written (BOM stripped), in order."""
    rel = con.sql(
        f"SELECT * FROM read_csv({text(path)}, header = true, all_varchar = true) LIMIT 0"
    )
    return [c.lstrip("\ufeff") for c in rel.columns]


def raw_union(
    con: duckdb.DuckDBPyConnection, files: Sequence[tuple[int, str]], contract: RawContract
) -> str:
    """SQL of every file's contract columns as text (names matched trimmed and case-blind),
    with `source_seq` and `source_file`; an absent optional column is null."""
    selects = []
    for seq, path in files:
        header = _header(con, path)
        by_name = {h.strip().lower(): h for h in header}
        columns = "{" + ", ".join(f"{text(h)}: 'VARCHAR'" for h in header) + "}"
        picked = [
            f"{ident(by_name[f.name])} AS {ident(f.name)}"
            if f.name in by_name
            else f"CAST(NULL AS VARCHAR) AS {ident(f.name)}"
            for f in contract.fields
        ]
        selects.append(
            f"SELECT {seq} AS source_seq, {text(Path(path).name)} AS file_name, "
            + ", ".join(picked)
            + f" FROM {_csv(path).replace('{cols}', columns)}"
        )
    return "\nUNION ALL\n".join(selects)


def _trimmed(column: str) -> str:
    return f"nullif(trim({ident(column)}, ' \t\r\n'), '')"


def _parsed(f: RawField) -> str:
    raw = ident("_t_" + f.name)
    match f.kind:
        case "id" | "string":
            return f"lower({raw})" if f.lower_case else raw
        case "currency":
            return f"upper({raw})"
        case "timestamp":
            return _timestamp(ident("_p_" + f.name))
        case "number":
            return f"TRY_CAST({raw} AS DOUBLE)"
        case "integer":
            number = f"TRY_CAST({raw} AS DOUBLE)"
            return (
                f"CASE WHEN isfinite({number}) AND {number} = floor({number}) "
                f"AND abs({number}) < 9007199254740992 THEN CAST({number} AS BIGINT) END"
            )
        case "boolean":
            lower = f"lower({raw})"
            true = ", ".join(text(v) for v in _TRUE)
            false = ", ".join(text(v) for v in _FALSE)
            return (
                f"CASE WHEN {lower} IN ({true}) THEN true WHEN {lower} IN ({false}) THEN false END"
            )
        case "decimal":
            return f"TRY_CAST(round_even(TRY_CAST({raw} AS DECIMAL(38, 12)), 2) AS DECIMAL(18, 2))"
    raise ValueError(f"unknown kind {f.kind!r}")


def _split_timestamp(column: str) -> str:
    return f"regexp_extract({_trimmed(column)}, {text(_ISO)}, ['d', 't', 'o'])"


def _timestamp(parts: str) -> str:
    """ISO text split by `_split_timestamp` → naive UTC TIMESTAMP (source time zone UTC:
    naive text is already UTC)."""
    time = f"replace(coalesce(nullif({parts}.t, ''), '00:00:00'), ',', '.')"
    time = f"CASE WHEN length({time}) = 5 THEN {time} || ':00' ELSE {time} END"
    local = f"TRY_CAST(({parts}.d || ' ' || {time}) AS TIMESTAMP)"
    offset = f"replace(upper(nullif({parts}.o, '')), ':', '')"
    minutes = (
        f"CASE WHEN {offset} = 'Z' THEN 0 ELSE "
        f"(CASE WHEN starts_with({offset}, '-') THEN -1 ELSE 1 END) * "
        f"(TRY_CAST(substr({offset}, 2, 2) AS BIGINT) * 60 "
        f"+ coalesce(TRY_CAST(substr({offset}, 4, 2) AS BIGINT), 0)) END"
    )
    return (
        f"CASE WHEN nullif({parts}.d, '') IS NULL THEN NULL "
        f"WHEN {offset} IS NULL THEN {local} "
        f"ELSE {local} - to_minutes(CAST({minutes} AS BIGINT)) END"
    )


def _rules(f: RawField, currency: str, latest: dt.datetime) -> list[str]:
    """Conditions that make a (typed) row invalid, one per rule of the field."""
    c = ident(f.name)
    bad = []
    if f.required:
        bad.append(f"{c} IS NULL")
    if f.max_length is not None:
        bad.append(f"length({c}) > {f.max_length}")
    if f.allowed is not None:
        bad.append(f"{c} NOT IN ({', '.join(text(v) for v in f.allowed)})")
    if f.minimum is not None:
        bad.append(f"NOT ({c} >= {f.minimum})")  # NaN is greater than any number in DuckDB
    if f.maximum is not None:
        bad.append(f"NOT ({c} <= {f.maximum})")
    if f.kind == "currency":
        bad.append(f"{c} <> {text(currency)}")
    if f.kind == "timestamp":
        bad.append(f"{c} < TIMESTAMP '2000-01-01 00:00:00'")
        bad.append(f"{c} > TIMESTAMP '{latest.strftime('%Y-%m-%d %H:%M:%S.%f')}'")
    return [f"coalesce({b}, false)" for b in bad]


def valid_rows_sql(
    raw_sql: str, contract: RawContract, settings: Settings, ingested_at: dt.datetime
) -> str:
    """Typed rows that pass every rule, with `source_seq` and `file_name` (one file = one seq)."""
    latest = ingested_at.astimezone(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    trimmed = ", ".join(
        [f"{_trimmed(f.name)} AS {ident('_t_' + f.name)}" for f in contract.fields]
        + [
            f"{_split_timestamp(f.name)} AS {ident('_p_' + f.name)}"
            for f in contract.fields
            if f.kind == "timestamp"
        ]
    )
    typed = ", ".join(f"{_parsed(f)} AS {ident(f.name)}" for f in contract.fields)
    helpers = ", ".join(
        [ident("_t_" + f.name) for f in contract.fields]
        + [ident("_p_" + f.name) for f in contract.fields if f.kind == "timestamp"]
    )
    type_failed = " OR ".join(
        f"({ident('_t_' + f.name)} IS NOT NULL AND {ident(f.name)} IS NULL)"
        for f in contract.fields
        if f.kind in ("timestamp", "number", "integer", "boolean", "decimal")
    )
    rules = [r for f in contract.fields for r in _rules(f, settings.currency, latest)]
    answers = [n for n in contract.names if n.startswith("perc_") or n in ("nps", "csat", "ces")]
    if answers:
        rules.append("NOT (" + " OR ".join(f"{ident(a)} IS NOT NULL" for a in answers) + ")")
    key = ident(contract.key)
    version = "coalesce(updated_at, started_at)" if contract is INTERACTIONS_RAW else "submitted_at"
    content = "row(" + ", ".join(ident(n) for n in contract.names) + ")"
    return f"""
    WITH raw AS ({raw_sql}),
    split AS (SELECT source_seq, file_name, {trimmed} FROM raw),
    parsed AS (SELECT *, {typed} FROM split),
    typed AS (
        SELECT * EXCLUDE ({helpers}), ({type_failed}) AS type_failed FROM parsed
    ),
    versioned AS (SELECT *, {version} AS _version FROM typed),
    conflicts AS (  -- same key and version time, different content, in one file
        SELECT source_seq, {key} AS k, _version AS v
        FROM versioned
        WHERE {key} IS NOT NULL AND _version IS NOT NULL
        GROUP BY ALL
        HAVING count(DISTINCT {content}) > 1
    )
    SELECT t.* EXCLUDE (type_failed, _version)
    FROM versioned AS t
    LEFT JOIN conflicts AS c
      ON c.source_seq = t.source_seq AND c.k = t.{key} AND c.v = t._version
    WHERE c.k IS NULL AND NOT t.type_failed AND NOT ({" OR ".join(rules)})
    """


def _half_even_ratio(numerator: str, denominator: int) -> str:
    """round_half_even(numerator / denominator) for an integer numerator, in integers."""
    n = f"abs({numerator})"
    q = f"({n} // {denominator})"
    r = f"({n} % {denominator})"
    rounded = (
        f"({q} + CASE WHEN 2 * {r} > {denominator} THEN 1 "
        f"WHEN 2 * {r} = {denominator} THEN {q} % 2 ELSE 0 END)"
    )
    return f"CAST(sign({numerator}) * {rounded} AS HUGEINT)"


def _money(cents: str) -> str:
    """Whole cents (an integer) → DECIMAL(18, 2), exactly."""
    return f"CAST(CAST({cents} AS DECIMAL(38, 0)) * CAST(0.01 AS DECIMAL(3, 2)) AS DECIMAL(18, 2))"


def _cents(value: float) -> Fraction:
    return Fraction(Decimal(str(value))) * 100


def curated_interactions_sql(valid_sql: str, settings: Settings, contract: RawContract) -> str:
    """Latest version of each interaction_id, with the curated derived columns (SPEC §4)."""
    rate = Fraction(Decimal(str(settings.gross_margin_rate)))
    revenue_cents = "CAST(coalesce(revenue, 0) * 100 AS HUGEINT)"
    margin_default = _half_even_ratio(f"{revenue_cents} * {rate.numerator}", rate.denominator)
    cost_terms = []
    for channel in CHANNELS:
        rates = settings.cost_to_serve[channel]
        per_contact, per_minute = _cents(rates.per_contact), _cents(rates.per_minute)
        # cents = per_contact + per_minute × micros / 60e6, exact in integers
        denominator = per_minute.denominator * 60_000_000
        numerator = f"{per_minute.numerator} * CAST(round(handle_seconds * 1e6) AS HUGEINT)"
        assert per_contact.denominator == 1, "per_contact rates with sub-cent precision"
        cost_terms.append(
            f"WHEN {text(channel)} THEN {per_contact.numerator} + "
            f"{_half_even_ratio(numerator, denominator)}"
        )
    cost = f"CASE channel {' '.join(cost_terms)} END"
    return f"""
    SELECT interaction_id, customer_id, channel, started_at,
           CAST(started_at AS DATE) AS interaction_date,
           handle_seconds, queue_seconds, resolved AS is_resolved, reason,
           CAST(coalesce(revenue, 0) AS DECIMAL(18, 2)) AS revenue,
           coalesce(margin, {_money(margin_default)}) AS margin,
           {_money(cost)} AS cost_to_serve,
           {text(settings.currency)} AS currency, agent_id,
           coalesce(updated_at, started_at) AS updated_at,
           file_name, source_seq
    FROM ({valid_sql})
    QUALIFY row_number() OVER (
        PARTITION BY interaction_id
        ORDER BY coalesce(updated_at, started_at) DESC, source_seq DESC
    ) = 1
    """


def curated_responses_sql(valid_sql: str, settings: Settings, contract: RawContract) -> str:
    """Latest version of each response_id, raw answers as INTEGER, with `submitted_date`."""
    answers = ", ".join(
        f"CAST({ident(n)} AS INTEGER) AS {ident(n)}"
        for n in contract.names
        if n.startswith(("exp_", "perc_")) or n in ("nps", "csat", "ces")
    )
    return f"""
    SELECT response_id, customer_id, interaction_id, submitted_at,
           CAST(submitted_at AS DATE) AS submitted_date, {answers}, file_name, source_seq
    FROM ({valid_sql})
    QUALIFY row_number() OVER (
        PARTITION BY response_id ORDER BY submitted_at DESC, source_seq DESC
    ) = 1
    """
