"""The survey export: SERVQUAL answers, scores and comments, tied to contacts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from servio.schemas.catalog import SCALE_MAX, SCALE_MIN, ItemCatalog
from servio.schemas.raw import surveys_raw
from servio.tools.generate.business import (
    DIMENSION_NOISE,
    EXPECTATION_OFFSET,
    ITEM_ANSWER_RATE,
    NEGATIVE_COMMENTS,
    NEUTRAL_COMMENTS,
    NPS_DRIVER_WEIGHTS,
    PERCEPTION_OFFSET,
    PERCEPTION_ONLY_SHARE,
    POSITIVE_COMMENTS,
    RELATIONSHIP_SURVEY_SHARE,
    TIMESTAMP_STYLE_SHARES,
    Contacts,
    Customers,
    _draw,
    _index,
    _lookup,
    _period,
)
from servio.tools.generate.defects import _survey_defects
from servio.tools.generate.files import ExportFile, _file_count, _file_dialects, _split
from servio.tools.generate.options import Bool, Float, GenerateOptions
from servio.tools.generate.plan import SourcePlan, _assign_defects, _with_duplicates
from servio.tools.generate.values import _ids, _span, _utc, _where

COMMENT_TEXTS = [*POSITIVE_COMMENTS, *NEUTRAL_COMMENTS, *NEGATIVE_COMMENTS, None]


def _surveys(
    rng: np.random.Generator,
    people: Customers,
    contacts: Contacts,
    interactions: SourcePlan,
    catalog: ItemCatalog,
    options: GenerateOptions,
) -> SourcePlan:
    """Responses to a share of the clean contacts; what happened in the contact shapes the answers."""
    asked = np.flatnonzero(
        interactions.clean & (rng.random(len(interactions.clean)) < options.survey_rate)
    )
    delay = np.rint(60 + 2 * 3600 * np.exp(1.3 * rng.standard_normal(len(asked)))).astype(np.int64)
    submitted = contacts.started[asked] + contacts.handle[asked] + delay
    answered = submitted <= _period(options)[1]  # later answers have not arrived yet
    asked, submitted = asked[answered], submitted[answered]
    n = len(asked)
    order = np.argsort((submitted - submitted.min(initial=0)) * max(n, 1) + np.arange(n))
    asked, submitted = asked[order], submitted[order]

    customer = contacts.customer[asked]
    unresolved = ~contacts.resolved[asked]
    queue = np.nan_to_num(contacts.queue[asked], nan=0.0)
    attempt = contacts.attempt[asked]
    queue_penalty = np.minimum(2.5, 0.55 * np.log1p(queue / 120))
    smooth = (~unresolved) & (queue < 300) & (attempt == 0)
    base = 5.6 + people.mood[customer] - 0.3 * attempt + 0.3 * smooth
    expectation_base = people.expectation[customer]

    answers: dict[str, NDArray[np.int8]] = {}  # 0 = not answered
    perception_only = rng.random(n, dtype=np.float32) < PERCEPTION_ONLY_SHARE
    latent_by_dimension: list[Float] = []
    for dimension in catalog.dimensions:
        technical = catalog.side_of(dimension) == "technical"
        latent = base + PERCEPTION_OFFSET.get(dimension, 0.0)
        latent = latent - np.where(unresolved, 2.2 if technical else 0.4, 0.0)
        latent = latent - queue_penalty * (1.0 if dimension == "responsiveness" else 0.25)
        latent = latent + DIMENSION_NOISE * rng.standard_normal(n)
        latent_by_dimension.append(latent)
        expectation = expectation_base + EXPECTATION_OFFSET.get(dimension, 0.0)
        for item in catalog.items_of(dimension):
            answers[item.expectation_column] = _scores(rng, expectation, 0.6, perception_only)
            answers[item.perception_column] = _scores(rng, latent, 0.7, None)
    overall = np.mean(latent_by_dimension, axis=0)
    weights = [NPS_DRIVER_WEIGHTS.get(d, 0.0) for d in catalog.dimensions]
    drivers = np.average(latent_by_dimension, axis=0, weights=weights) if sum(weights) else overall
    noise = rng.standard_normal((3, n))
    nps = _on_scale(2.5 * (drivers - 2.1) + 1.3 * noise[0], 0, 10)
    csat = _on_scale(1 + (overall - 1) * 4 / 6 + 0.45 * noise[1], 1, 5)
    effort = 1.8 + 1.8 * unresolved + 0.6 * queue_penalty + 0.6 * attempt
    ces = _on_scale(effort + 0.8 * noise[2], 1, 7)
    sentiment = np.where(nps >= 9, 0, np.where(nps >= 7, 1, 2))
    nps[rng.random(n, dtype=np.float32) < 0.08] = -1  # -1 = not answered (0 is a score)
    csat[rng.random(n, dtype=np.float32) < 0.12] = 0
    ces[rng.random(n, dtype=np.float32) < 0.15] = 0
    silent = (nps < 0) & (csat == 0) & (ces == 0)
    for item in catalog.items:
        silent &= answers[item.perception_column] == 0
    csat[silent] = 3  # a valid response answers something
    answers.update(nps=nps, csat=csat, ces=ces)

    starts = np.cumsum([0, len(POSITIVE_COMMENTS), len(NEUTRAL_COMMENTS)])
    sizes = np.array([len(POSITIVE_COMMENTS), len(NEUTRAL_COMMENTS), len(NEGATIVE_COMMENTS)])
    comment = starts[sentiment] + rng.integers(0, 1 << 30, n) % sizes[sentiment]
    comment = np.where(rng.random(n, dtype=np.float32) < 0.6, len(COMMENT_TEXTS) - 1, comment)
    wants_call = rng.random(n, dtype=np.float32) < 0.1  # leaves a phone number in the comment
    relationship = rng.random(n, dtype=np.float32) < RELATIONSHIP_SURVEY_SHARE  # about no contact
    ts_style = _draw(rng, TIMESTAMP_STYLE_SHARES, n)

    contract = surveys_raw(catalog)
    count = _file_count(n, options.days, options.formats)
    bounds = _split(n, count)
    file_of_row = np.repeat(np.arange(count), np.diff(bounds))
    files = [
        ExportFile(
            "surveys",
            f"surveys_{i + 1:03d}_{_span(submitted[bounds[i] : bounds[i + 1]])}",
            columns=(*contract.names, "comment"),
            **dialect,
        )
        for i, dialect in enumerate(_file_dialects("surveys", count, options.formats, 1))
    ]
    defects = _survey_defects(catalog)
    messy = round(options.messiness * n)
    defect = _assign_defects(rng, files, file_of_row, messy - messy // 10, defects)
    clean = defect < 0
    rows, duplicates = _with_duplicates(
        rng, np.flatnonzero(clean), messy // 10, bounds, file_of_row
    )

    frame = pl.DataFrame(
        {
            "response_id": _ids("R", rows + 1, max(9, len(str(n)))),
            "customer_id": people.ids.gather(_index(customer[rows])),
            "interaction_id": _where(
                ~relationship[rows], _ids("I", asked[rows] + 1, interactions.id_width)
            ),
            "submitted_at": _utc(submitted[rows]),
            **{column: values[rows] for column, values in answers.items()},
            "comment": _lookup(COMMENT_TEXTS, comment[rows]),
            "_phone": people.phone.gather(_index(customer[rows])),
            "_wants_call": wants_call[rows],
            "_ts_style": ts_style[rows],
            "_defect": defect[rows],
            "_file": file_of_row[rows].astype(np.int32),
        }
    )
    frame = frame.with_columns(
        *(
            pl.when(pl.col(c) > 0).then(pl.col(c)).alias(c)
            for c in (*catalog.answer_columns, "csat", "ces")
        ),
        nps=pl.when(pl.col("nps") >= 0).then(pl.col("nps")),
        comment=pl.when("_wants_call")
        .then(
            pl.concat_str(
                "comment", pl.format("Call me on {}", "_phone"), separator=" ", ignore_nulls=True
            )
        )
        .otherwise("comment"),
    ).drop("_phone", "_wants_call")
    sizes = np.bincount(file_of_row[rows], minlength=count)
    starts = np.concatenate([[0], np.cumsum(sizes)])

    def rows_of(i: int) -> Callable[[], pl.DataFrame]:
        return lambda: frame.slice(int(starts[i]), int(sizes[i]))

    return SourcePlan(
        files=[(spec, int(sizes[i]), rows_of(i)) for i, spec in enumerate(files)],
        defects=defects,
        timestamps=("submitted_at",),
        booleans=(),
        clean=clean,
        id_width=max(9, len(str(n))),
        counts={
            "valid_ids": int(clean.sum()),
            "bad_rows": int((~clean).sum()),
            "duplicate_rows": duplicates,
            "reexport_rows": 0,
        },
    )


def _scores(
    rng: np.random.Generator, centre: Float, noise: float, skipped: Bool | None
) -> NDArray[np.int8]:
    """Answers on the item scale around centre; 0 where not answered."""
    n = len(centre)
    values = _on_scale(
        centre + noise * rng.standard_normal(n, dtype=np.float32), SCALE_MIN, SCALE_MAX
    )
    unanswered = rng.random(n, dtype=np.float32) >= ITEM_ANSWER_RATE
    if skipped is not None:
        unanswered |= skipped
    return np.where(unanswered, 0, values).astype(np.int8)


def _on_scale(values: Any, low: int, high: int) -> NDArray[np.int8]:
    """Rounded to whole points and kept within the scale."""
    return np.clip(np.rint(values), low, high).astype(np.int8)
