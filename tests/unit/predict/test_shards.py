"""Planning a sharded batch job: stable ids, every name once, resumable, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.adapters.storage import LocalStore
from pipeline.predict.shards import (
    list_source,
    pending_shards,
    plan_shards,
    read_plan,
    store_plan,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def folder_of(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "archive"
    (folder / "sub").mkdir(parents=True)
    for index in range(count):
        (folder / ("sub" if index % 2 else "") / f"{index:03d}.jpeg").write_bytes(b"x")
    return folder


def test_shards_cover_every_name_once_in_order_and_the_job_id_is_stable(
    tmp_path: Path, store: LocalStore
) -> None:
    source = list_source(str(folder_of(tmp_path, 10)), store)
    shards = plan_shards(source, 4, "3")
    assert [len(s.names) for s in shards] == [4, 4, 2]
    assert [n for s in shards for n in s.names] == list(source.names)
    assert len(set(source.names)) == 10 and "sub/001.jpeg" in source.names
    assert plan_shards(source, 4, "3")[0].job == shards[0].job  # same job: a re-run resumes
    # Another model version or shard size is another job: its results are never mixed in.
    assert plan_shards(source, 4, "4")[0].job != shards[0].job
    assert plan_shards(source, 5, "3")[0].job != shards[0].job
    with pytest.raises(ValueError, match="at least 1"):
        plan_shards(source, 0, "3")


def test_a_stored_plan_reads_back_and_done_shards_are_not_pending(
    tmp_path: Path, store: LocalStore
) -> None:
    shards = plan_shards(list_source(str(folder_of(tmp_path, 5)), store), 2, "1")
    store_plan(shards, store)
    assert read_plan(store, shards[1].job, 1) == shards[1]
    store.put(shards[0].result_key, b"done")
    assert pending_shards(shards, store) == shards[1:]


def test_store_prefixes_and_manifests_are_sources(tmp_path: Path, store: LocalStore) -> None:
    for key in ("incoming/a.png", "incoming/b.png", "other/c.png"):
        store.put(key, b"x")
    assert list_source("incoming/", store).names == ("incoming/a.png", "incoming/b.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("key,label\nother/c.png,NORMAL\nincoming/a.png,NORMAL\nother/c.png,x\n")
    assert list_source(str(manifest), store).names == ("other/c.png", "incoming/a.png")
    store.put("manifests/m.csv", manifest.read_bytes())
    assert list_source("manifests/m.csv", store).kind == "manifest"


def test_bad_sources_are_named_with_the_problem(tmp_path: Path, store: LocalStore) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="nothing to score"):
        list_source(str(tmp_path / "empty"), store)
    with pytest.raises(FileNotFoundError, match="nothing to score"):
        list_source("no-such-prefix/", store)
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        list_source("missing.csv", store)
    (tmp_path / "bad.csv").write_text("path\nx.png\n")
    with pytest.raises(ValueError, match="no 'key' column"):
        list_source(str(tmp_path / "bad.csv"), store)
