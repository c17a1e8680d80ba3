"""Raw and curated roots on an S3-compatible server (moto on loopback, started here): the
same Delta tables as on local disk row for row, reruns that change nothing, crashes finished
without rename (delta-rs commits by conditional PUT, which moto honours), and credentials
that never leave the AWS environment."""

from __future__ import annotations

import io
import json
import logging
import pickle
import socket
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from servio.config import ConfigError, Settings, load_settings
from servio.lake.files import PLAN
from servio.lake.lake import Lake, LakeBusy
from servio.raw import landing
from servio.schemas.snapshot_tables import value_tables
from servio.schemas.tables import INGEST_LEDGER, INTERACTIONS, curated_tables
from servio.steps.publish import IngestSummary
from tests.faults_harness import assert_same_tables, fast_run, finish, make_exports, tables
from tests.runs import REQUIRED_ONLY, run
from tests.s3server import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    objects,
    read_object,
    s3_environment,
    upload_tree,
    write_object,
)

# A whole ingest, a server or real processes: the slow set (README, "Two commands").
pytestmark = pytest.mark.e2e

RAW, LAKE = "raw", "lake"


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A loopback S3 and the standard AWS variables pointing at it, for the whole module."""
    with s3_environment(tmp_path_factory.mktemp("aws"), (RAW, LAKE)):
        yield


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("exports")
    make_exports(target)
    return target


@pytest.fixture(scope="module")
def local_tables(
    exports: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, pl.DataFrame]:
    """The reference: the same exports, one process, local disk."""
    base = tmp_path_factory.mktemp("local")
    config = _config(base, str(exports), str(base / "curated"))
    _run(config)
    return tables(config)


def _config(folder: Path, raw_root: str, curated_root: str) -> Path:
    config = folder / "servio.toml"
    config.write_text(f'raw_root = "{raw_root}"\ncurated_root = "{curated_root}"\n')
    return config


def _s3_lake(exports: Path, folder: Path, only: str = "") -> tuple[Path, str]:
    """Exports (those whose name contains `only`) uploaded to s3://raw/<prefix>, curated
    root s3://lake/<prefix>; a prefix of its own per test."""
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    upload_tree(exports, RAW, prefix, only)
    return _config(folder, f"s3://{RAW}/{prefix}", f"s3://{LAKE}/{prefix}"), prefix


def _run(config: Path) -> IngestSummary:
    """The run's sequence, with the `required` checks only: publishing and storage are under
    test here, not rules (the GX suite costs ~1.5 s a file)."""
    summary = run(config, REQUIRED_ONLY).ingest
    assert summary is not None
    return summary


def _named_by_delta(config: Path, prefix: str) -> set[str]:
    """The keys of every data file the tables' current Delta versions name."""
    settings = load_settings(str(config))
    lake = Lake(settings.curated_root)
    return {
        url.removeprefix(f"s3://{LAKE}/")
        for table in curated_tables(settings.catalog).values()
        for url in lake.files(table)
    }


def _assert_finished(config: Path, prefix: str) -> None:
    """No plan, lock or staging left: under _servio/ only servio's own Delta tables; and
    every data file in a table folder is one the table's current version names."""
    keys = set(objects(LAKE, prefix))
    control = {k.removeprefix(f"{prefix}/_servio/").split("/")[0] for k in keys if "/_servio/" in k}
    assert control <= {"state", "publications"}, control
    table_files = {k for k in keys if k.endswith(".parquet") and "/_servio/" not in k}
    table_files = {k for k in table_files if "/_delta_log/" not in k}
    assert table_files == _named_by_delta(config, prefix)


# ---------------------------------------------------------------------------------------
# the main path


@pytest.fixture(scope="module")
def s3_run(
    aws: None, exports: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, IngestSummary]:
    config, prefix = _s3_lake(exports, tmp_path_factory.mktemp("s3"))
    summary = _run(config)
    return config, prefix, summary


def test_a_run_on_s3_equals_the_local_disk_run_row_for_row(
    s3_run: tuple[Path, str, IngestSummary], local_tables: dict[str, pl.DataFrame]
) -> None:
    config, prefix, summary = s3_run
    assert not Lake(load_settings(str(config)).curated_root).store.is_local
    assert summary.files_ingested == 7
    assert_same_tables(config, local_tables)
    _assert_finished(config, prefix)
    assert any(
        k.endswith("/interactions/_delta_log/00000000000000000001.json")
        for k in objects(LAKE, prefix)
    )


def test_the_tables_on_s3_are_hive_partitioned_delta_tables(
    s3_run: tuple[Path, str, IngestSummary],
) -> None:
    config, prefix, _ = s3_run
    keys = [k for k in objects(LAKE, f"{prefix}/interactions/") if k.endswith(".parquet")]
    assert keys
    assert all("/interaction_date=" in k and "/part-" in k for k in keys)
    # Read by a plain reader with the key (as BI tools would read a listed file).
    frame = pl.read_parquet(f"s3://{LAKE}/{keys[0]}")
    assert frame.height > 0 and "interaction_id" in frame.columns
    # And as a Delta table, by Polars and by delta-rs, with the AWS environment alone.
    from servio.objectstore import delta_storage_options

    url = f"s3://{LAKE}/{prefix}/interactions"
    options = delta_storage_options(url)
    scanned = pl.scan_delta(url, storage_options=options).select(pl.len()).collect().item()
    settings = load_settings(str(config))
    assert (
        scanned == Lake(settings.curated_root).scan(INTERACTIONS).select(pl.len()).collect().item()
    )


def test_a_second_run_on_s3_changes_no_object(
    s3_run: tuple[Path, str, IngestSummary],
) -> None:
    config, prefix, _ = s3_run
    before = objects(LAKE, prefix)
    summary = _run(config)
    assert summary.files_ingested == 0
    assert objects(LAKE, prefix) == before


def test_discovery_on_s3_skips_in_flight_names_and_hashes_like_local(
    aws: None, exports: Path, tmp_path: Path
) -> None:
    local = tmp_path / "raw"
    local.mkdir()
    (local / "interactions").mkdir()
    (local / "interactions" / "late.csv.part").write_text("half")
    (local / "interactions" / ".hidden.csv").write_text("x")
    (local / "_incoming").mkdir()
    (local / "_incoming" / "a.csv").write_text("x")
    (local / "notes.txt").write_text("loose file")
    for path in exports.rglob("*"):
        if path.is_file():
            target = local / path.relative_to(exports)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    prefix = f"d-{uuid.uuid4().hex[:8]}"
    upload_tree(local, RAW, prefix)

    def described(root: str) -> list[tuple[str, str, str, int, str]]:
        return [
            (f.relative_path, f.source, f.file_format, f.size_bytes, f.sha256)
            for f in landing.discover(root)
        ]

    on_s3 = described(f"s3://{RAW}/{prefix}")
    assert on_s3 == described(str(local))
    assert [name for name, *_ in on_s3 if "part" in name or "hidden" in name] == []
    assert ("notes.txt", "unknown", "txt") in {row[:3] for row in on_s3}


def test_reading_an_object_checks_it_against_the_discovered_hash(aws: None, exports: Path) -> None:
    prefix = f"h-{uuid.uuid4().hex[:8]}"
    upload_tree(exports / "surveys", RAW, f"{prefix}/surveys")
    landed = next(iter(landing.discover(f"s3://{RAW}/{prefix}")))
    columns = ("response_id", "customer_id", "submitted_at")
    assert landing.read_raw(landed, columns).height > 0
    key = landed.path.removeprefix(f"s3://{RAW}/")
    write_object(RAW, key, b"customer_id,submitted_at\nc1,2026-11-01T00:00:00Z\n")
    # Not a verdict about the content: deferred, and the next run ingests the new object.
    with pytest.raises(landing.FileDeferred, match="changed after it was discovered"):
        landing.read_raw(landed, columns)


def test_a_lake_sent_to_a_worker_reads_the_same_tables(
    s3_run: tuple[Path, str, IngestSummary],
) -> None:
    """Tasks on Dask workers get the lake pickled: it carries the URL, not a connection."""
    config, _, _ = s3_run
    settings = load_settings(str(config))
    lake = Lake(settings.curated_root)
    sent = pickle.loads(pickle.dumps(lake))
    assert not sent.store.is_local and sent.root == lake.root
    for table in curated_tables(settings.catalog).values():
        assert sent.scan(table).collect().equals(lake.scan(table).collect()), table.name


def test_watching_an_object_store_raw_root_is_refused_clearly() -> None:
    from servio.flows.watch import Watcher
    from servio.raw.paths import landed_file

    settings = Settings(raw_root="s3://raw/landing")
    with pytest.raises(ValueError, match="need a local or mounted raw root"):
        Watcher(settings)
    with pytest.raises(ValueError, match="need a local or mounted raw root"):
        landed_file(settings.raw_root, "interactions/a.csv")


# ---------------------------------------------------------------------------------------
# crashes: no rename; the plan (one PUT) is the commit point, Delta txn makes replays exact


def test_a_kill_after_the_publication_commit_is_rolled_forward_by_the_next_run(
    aws: None,
    exports: Path,
    tmp_path: Path,
    local_tables: dict[str, pl.DataFrame],
) -> None:
    config, prefix = _s3_lake(exports, tmp_path)
    killed = fast_run(config, "--no-rules", SERVIO_KILL_AT="between_table_commits:2")
    code, _, err = finish(killed, timeout=120)
    assert code == -9, err
    keys = set(objects(LAKE, prefix))
    assert f"{prefix}/{PLAN}" in keys
    assert f"{prefix}/_servio/run.lock" in keys  # left by the dead process
    # Two tables committed (their txn), the ledger not; readers pinned at the latest
    # publication see none of it (there is none yet).
    lake = Lake(load_settings(str(config)).curated_root)
    assert lake.scan(INTERACTIONS).collect().height == local_tables["interactions"].height
    assert lake.scan(INGEST_LEDGER).collect().is_empty()
    assert lake.pinned().scan(INTERACTIONS).collect().is_empty()

    _run(config)  # takes over the dead process's lock, rolls forward, then carries on
    assert_same_tables(config, local_tables)
    _assert_finished(config, prefix)
    # Each table was committed once for the ingest publication: no commit was replayed.
    assert Lake(load_settings(str(config)).curated_root).delta_table("interactions").version() == 1


def test_a_crash_before_the_commit_leaves_the_tables_and_its_files_are_removed(
    aws: None, exports: Path, tmp_path: Path, local_tables: dict[str, pl.DataFrame]
) -> None:
    config, prefix = _s3_lake(exports, tmp_path)
    # The ingest publication commits; the snapshot's is killed with 2 of 8 files staged.
    killed = fast_run(
        config,
        "--no-rules",
        SERVIO_KILL_AT="partition_staged:2",
        SERVIO_KILL_AFTER="after_ingest_publish",
    )
    code, _, err = finish(killed)
    assert code == -9, err
    keys = set(objects(LAKE, prefix))
    staged = {k for k in keys if "/_servio/staging/" in k and "/publish/" in k}
    assert len(staged) == 2 and all("/customer_" in k for k in staged)
    assert not any("/customer_" in k and "/_servio/" not in k for k in keys)  # no table touched
    after_crash = tables(config)
    for name, frame in local_tables.items():
        if name.startswith("customer_") or name in value_tables(365):  # the snapshot's
            assert after_crash[name].is_empty(), name
        else:
            assert after_crash[name].equals(frame), name

    _run(config)  # recover() drops the dead run's staging; the snapshot is built again
    assert not staged & set(objects(LAKE, prefix))
    assert_same_tables(config, local_tables)
    _assert_finished(config, prefix)


def test_delta_commits_on_s3_are_conditional_puts_moto_refuses_a_second_writer(aws: None) -> None:
    """delta-rs commits version N by creating `_delta_log/N.json` with If-None-Match: *; the
    loopback S3 (moto) honours it, so of two writers racing for N only the first wins (no
    locking provider, no AWS_S3_ALLOW_UNSAFE_RENAME)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import CommitProperties

    from servio.objectstore import delta_storage_options

    prefix = f"race-{uuid.uuid4().hex[:8]}"
    url = f"s3://{LAKE}/{prefix}/t"
    options = delta_storage_options(url)
    write_deltalake(url, pa.table({"x": [1]}), storage_options=options)
    first, second = (DeltaTable(url, storage_options=options) for _ in range(2))  # both at 0
    write_deltalake(
        first,
        pa.table({"x": [2]}),
        mode="overwrite",
        commit_properties=CommitProperties(custom_metadata={"who": "first"}),
    )
    with pytest.raises(CommitFailedError):
        write_deltalake(
            second,
            pa.table({"x": [3]}),
            mode="overwrite",
            commit_properties=CommitProperties(
                custom_metadata={"who": "second"}, max_commit_retries=0
            ),
        )
    table = DeltaTable(url, storage_options=options)
    assert table.version() == 1
    assert table.to_pyarrow_table()["x"].to_pylist() == [2]
    # (read with boto3: delta-rs's history() timed out on moto in a LIST with start-after)
    commit = read_object(LAKE, f"{prefix}/t/_delta_log/00000000000000000001.json")
    infos = [json.loads(line) for line in commit.splitlines()]
    assert [i["commitInfo"]["who"] for i in infos if "commitInfo" in i] == ["first"]


def test_maintenance_on_s3_compacts_checkpoints_and_vacuums(aws: None) -> None:
    from datetime import date

    from servio.lake.files import TableChange
    from servio.schemas.snapshot_tables import CUSTOMER_SEGMENTS

    day = date(2026, 1, 1)
    prefix = f"m-{uuid.uuid4().hex[:8]}"
    lake = Lake(f"s3://{LAKE}/{prefix}")
    for n in range(3):
        rows = pl.DataFrame(
            {"as_of_date": [day], "customer_id": [f"c{n}"]},
            schema_overrides={"as_of_date": pl.Date},
        ).select(
            pl.col(c).cast(t) if c in ("as_of_date", "customer_id") else pl.lit("x").alias(c)
            for c, t in CUSTOMER_SEGMENTS.schema.items()
        )
        lake.publish(f"r{n}", [TableChange(CUSTOMER_SEGMENTS, {day: rows})])

    def data_files() -> set[str]:
        keys = objects(LAKE, f"{prefix}/customer_segments/as_of_date=")
        return {k for k in keys if k.endswith(".parquet")}

    assert len(data_files()) == 3  # two superseded
    done = lake.maintain(retention_hours=0)  # 0 only here: the setting is >= 1 h
    assert done["customer_segments"]["files_deleted"] == 2
    assert done["publications"]["files_compacted"] == 3
    assert data_files() == {
        url.removeprefix(f"s3://{LAKE}/") for url in lake.files(CUSTOMER_SEGMENTS)
    }
    assert any(
        k.endswith(".checkpoint.parquet")
        for k in objects(LAKE, f"{prefix}/customer_segments/_delta_log/")
    )
    assert lake.scan(CUSTOMER_SEGMENTS).collect()["customer_id"].to_list() == ["c2"]


# ---------------------------------------------------------------------------------------
# the run lock


def test_the_s3_lock_refuses_a_second_writer_and_takes_over_a_dead_ones(aws: None) -> None:
    prefix = f"lock-{uuid.uuid4().hex[:8]}"
    lake = Lake(f"s3://{LAKE}/{prefix}")
    with lake.lock("first"), pytest.raises(LakeBusy, match="busy"), lake.lock("second"):
        pass
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = {"run_id": "dead", "pid": int(finished.stdout), "host": socket.gethostname()}
    lock_key = f"{prefix}/_servio/run.lock"
    write_object(LAKE, lock_key, json.dumps(dead).encode())
    with lake.lock("alive"):
        assert json.loads(read_object(LAKE, lock_key))["run_id"] == "alive"
    assert lock_key not in objects(LAKE, prefix)


# ---------------------------------------------------------------------------------------
# credentials


def _text_of(body: bytes, key: str) -> str:
    if key.endswith(".parquet"):  # compressed: look at the values and the metadata
        table = pq.read_table(io.BytesIO(body))
        return f"{table.schema.metadata} {table.to_pylist()}"
    return body.decode("utf-8", errors="replace")


def test_credentials_appear_in_no_log_object_setting_or_error(
    aws: None,
    exports: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    config, prefix = _s3_lake(exports, tmp_path, only="_001_")
    with caplog.at_level(logging.DEBUG):
        for name in ("botocore", "aiobotocore", "s3fs", "fsspec", "urllib3", "moto"):
            logging.getLogger(name).setLevel(logging.INFO)  # DEBUG there: MBs of wire dumps
        _run(config)
        with pytest.raises(FileNotFoundError) as missing_lake:
            _run(_config(tmp_path, f"s3://{RAW}/{prefix}", "s3://no-such-bucket/x"))
        with pytest.raises(FileNotFoundError) as missing_raw:
            _run(_config(tmp_path, "s3://no-such-raw-bucket/x", f"s3://{LAKE}/{prefix}-2"))
    assert "s3://no-such-bucket/x: the bucket does not exist" in str(missing_lake.value)
    assert "s3://no-such-raw-bucket/x: the bucket does not exist" in str(missing_raw.value)
    lake_objects = objects(LAKE, prefix)
    assert any("/quarantine/_delta_log/" in k for k in lake_objects)
    assert any("/_servio/state/_delta_log/" in k for k in lake_objects)
    texts = {
        "logs": caplog.text + "".join(r.getMessage() for r in caplog.records),
        "output": "".join(capfd.readouterr()),
        "settings": load_settings(str(config)).model_dump_json(),
        "errors": "".join(
            line
            for e in (missing_lake, missing_raw)
            for line in traceback.format_exception(e.value)
        ),
        **{key: _text_of(read_object(LAKE, key), key) for key in lake_objects},
    }
    assert len(texts["logs"]) > 0
    for where, text in texts.items():
        assert SECRET_ACCESS_KEY not in text, where
        assert ACCESS_KEY_ID not in text, where


@pytest.mark.parametrize(
    ("root", "says"),
    [
        ("s3://AKIAX:topsecret@bucket/prefix", "credentials do not belong in the URL"),
        ("gs://bucket/prefix", "scheme 'gs' is not supported"),
        ("s3://bucket/prefix?versionId=1", "no query"),
    ],
)
def test_a_bad_object_store_root_stops_before_any_data(
    tmp_path: Path, root: str, says: str
) -> None:
    with pytest.raises(ConfigError, match="curated_root") as error:
        load_settings(_config(tmp_path, "data/raw", root))
    assert says in str(error.value)
    assert "topsecret" not in str(error.value)
    with pytest.raises(ValueError) as direct:
        Settings(curated_root=root)
    assert "topsecret" not in str(direct.value)


def test_generate_wants_a_local_folder_when_the_raw_root_is_on_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from servio import cli

    monkeypatch.chdir(tmp_path)  # where a Path("s3://…") would have been written
    config = _config(tmp_path, "s3://raw/landing", str(tmp_path / "curated"))
    refused = CliRunner().invoke(cli.app, ["generate", "--config", str(config)])
    assert refused.exit_code == 2
    assert "give a local folder with --out" in refused.output
    assert not (tmp_path / "s3:").exists()


def test_run_results_and_the_busy_answer_on_s3(aws: None, tmp_path: Path) -> None:
    """`_servio/runs/<run_id>.json` goes through the lake's storage (a PUT on S3), and a live
    holder of the S3 lock is answered as busy (exit 3)."""
    from typer.testing import CliRunner

    from servio import cli

    prefix = f"runs-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "servio.toml"
    config.write_text(f'curated_root = "s3://{LAKE}/{prefix}"\n')
    done = CliRunner().invoke(cli.app, ["maintain", "--config", str(config), "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    key = f"{prefix}/_servio/runs/{doc['run_id']}.json"
    assert key in objects(LAKE, prefix)
    assert json.loads(read_object(LAKE, key)) == doc
    lake = Lake(f"s3://{LAKE}/{prefix}")
    with lake.lock("another-run"):
        holder = lake.lock_holder()
        assert holder is not None and holder["run_id"] == "another-run"
        busy = CliRunner().invoke(cli.app, ["maintain", "--config", str(config), "--json"])
    assert busy.exit_code == 3 and json.loads(busy.stdout)["status"] == "busy"
    assert lake.lock_holder() is None
