"""Raw CSV exports → the curated `interactions` and `survey_responses` rows, in DuckDB SQL.

An independent peer of `servio.raw.landing` + `transforms.standardise` + `servio.validation` +
`transforms.curate`, written from SPEC §1–§4 for the benchmark (`benchmarks/run.py`). It makes
the same keep/drop decision per row (type failures, the suite's rules, conflicting duplicates
within a file) but keeps no reasons, and it does not build the quarantine table's records.
Only CSV is read (the benchmark's input); the survey score columns are left to
`benchmarks/peer_quality.py`, which scores responses from their raw answers.

Written as a DuckDB user would for speed (issue #20): every file of a source read by
`read_csv` with its columns declared as text (no sniffing), in one statement per source; the
common ISO-8601 shapes parsed by `strptime` behind a `LIKE` test (the regex only for the
rest); conflicting duplicates and latest versions looked for only among keys that repeat;
spilling to disk beyond a memory limit; no Python per row.
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
            return _fast_timestamp(raw, _split_timestamp(f.name))
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
    """Date, time and offset of the trimmed text of `column` (`_t_<column>`)."""
    return f"regexp_extract({ident('_t_' + column)}, {text(_ISO)}, ['d', 't', 'o'])"


_SHAPE = "____-__-__T__:__:__"  # LIKE: 19 characters, date T time


def _fast_timestamp(raw: str, split: str) -> str:
    """The shapes exports use (Z, ±hh:mm, naive) by `strptime` after a `LIKE` test; the
    regex for anything else. An offset beyond ±14:00 or with minutes ≥ 60 is unparseable."""
    seconds = f"try_strptime(left({raw}, 19), '%Y-%m-%dT%H:%M:%S')"
    hours = f"TRY_CAST(substr({raw}, 21, 2) AS BIGINT)"
    minutes = f"TRY_CAST(substr({raw}, 24, 2) AS BIGINT)"
    sign = f"(CASE WHEN substr({raw}, 20, 1) = '-' THEN -1 ELSE 1 END)"
    return (
        f"CASE WHEN {raw} IS NULL THEN NULL "
        f"WHEN {raw} LIKE '{_SHAPE}Z' THEN {seconds} "
        f"WHEN {raw} LIKE '{_SHAPE}' THEN {seconds} "
        f"WHEN {raw} LIKE '{_SHAPE}+__:__' OR {raw} LIKE '{_SHAPE}-__:__' THEN "
        f"CASE WHEN {minutes} < 60 AND {hours} * 60 + {minutes} <= 840 THEN {seconds} - "
        f"to_minutes(CAST({sign} * ({hours} * 60 + {minutes}) AS BIGINT)) END "
        f"ELSE {_timestamp(split)} END"
    )


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
    """Typed rows that pass every rule, with `source_seq` and `file_name` (one file = one seq).

    One pass types and judges every row; conflicting duplicates (same key and version time,
    different content, in one file) are looked for only among the keys a file repeats."""
    latest = ingested_at.astimezone(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    trimmed = ", ".join(f"{_trimmed(f.name)} AS {ident('_t_' + f.name)}" for f in contract.fields)
    typed = ", ".join(f"{_parsed(f)} AS {ident(f.name)}" for f in contract.fields)
    helpers = ", ".join(ident("_t_" + f.name) for f in contract.fields)
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
    WITH typed AS MATERIALIZED (
        SELECT * EXCLUDE ({helpers}), ({type_failed}) OR {" OR ".join(rules)} AS _bad,
               {version} AS _version
        FROM (SELECT *, {typed} FROM (SELECT source_seq, file_name, {trimmed} FROM ({raw_sql})))
    ),
    repeated AS (  -- keys a file holds more than once: the only candidates for a conflict
        SELECT source_seq, {key} FROM typed WHERE {key} IS NOT NULL
        GROUP BY ALL HAVING count(*) > 1
    ),
    conflicts AS (
        SELECT source_seq, {key}, _version
        FROM typed SEMI JOIN repeated USING (source_seq, {key})
        WHERE _version IS NOT NULL
        GROUP BY ALL
        HAVING count(DISTINCT {content}) > 1
    )
    SELECT * EXCLUDE (_bad, _version)
    FROM typed ANTI JOIN conflicts USING (source_seq, {key}, _version)
    WHERE NOT _bad
    """


def latest_versions_sql(valid_sql: str, key: str, version: str) -> str:
    """The latest version of each key (then the later file): only keys that occur more than
    once are ranked."""
    k = ident(key)
    return f"""
    WITH valid AS MATERIALIZED ({valid_sql}),
    repeated AS (SELECT {k} FROM valid GROUP BY {k} HAVING count(*) > 1)
    SELECT * FROM valid ANTI JOIN repeated USING ({k})
    UNION ALL
    SELECT * FROM (
        SELECT * FROM valid SEMI JOIN repeated USING ({k})
        QUALIFY row_number() OVER (
            PARTITION BY {k} ORDER BY {version} DESC, source_seq DESC
        ) = 1
    )
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
    FROM ({latest_versions_sql(valid_sql, "interaction_id", "coalesce(updated_at, started_at)")})
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
    FROM ({latest_versions_sql(valid_sql, "response_id", "submitted_at")})
    """
