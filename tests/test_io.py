"""`nap_hf.io`: the one resumable, shard-mergeable JSON-lines store of the evaluation runner and the data
builder, and the atomic folder swap."""

from __future__ import annotations

import json
import os

import pytest

from nap_hf.io import JsonlStore, exclusive_lock, read_jsonl, replace_dir


def test_appended_shards_resume_after_a_cut_line_and_merge_in_order(tmp_path):
    store = JsonlStore(tmp_path / "records", "gsm8k__ar__steps8")
    with store.appender("rank0") as w:
        w.write({"id": "b", "index": 1, "text": "é"})
    with store.appender("rank1") as w:
        w.write({"id": "a", "index": 0})
    with open(store.shard_path("rank1"), "a", encoding="utf-8") as f:
        f.write('{"id": "c", "ind')  # a crash in the middle of a line
    assert [r["id"] for r in store.records()] == ["b", "a"]  # the cut line is dropped on reading
    with store.appender("rank1") as w:  # a restart appends after the last complete line
        w.write({"id": "c", "index": 2})
    assert read_jsonl(store.shard_path("rank1")) == [{"id": "a", "index": 0}, {"id": "c", "index": 2}]
    # the merged file and another run's files are not shards of this run
    other = JsonlStore(tmp_path / "records", "gsm8k__ar__steps80")
    other.write_shard("rank0", [{"id": "z"}])
    assert [p.name for p in store.shard_paths()] == [
        "gsm8k__ar__steps8.rank0.jsonl",
        "gsm8k__ar__steps8.rank1.jsonl",
    ]
    with store.appender("rank2") as w:
        w.write({"id": "a", "index": 0, "duplicate": True})  # the first record of an id (in tag order) wins
    order = {"a": 0, "b": 1, "c": 2}
    merged = store.merge(order=lambda r: order[r["id"]])
    assert [r["id"] for r in merged] == ["a", "b", "c"] and "duplicate" not in merged[0]
    assert store.shard_paths() == [] and read_jsonl(store.merged_path) == merged
    assert merged[1]["text"] == "é"
    assert [p.name for p in other.shard_paths()] == ["gsm8k__ar__steps80.rank0.jsonl"]
    # a resumed run reads the merged file, then any new shard
    with store.appender("rank0") as w:
        w.write({"id": "d", "index": 3})
    assert [r["id"] for r in store.records()] == ["a", "b", "c", "d"]


def test_whole_shards_carry_a_header_and_say_whether_they_are_complete(tmp_path):
    store = JsonlStore(tmp_path, "shard", sep="-", header=True)
    path = store.write_shard("000000", [{"id": "x"}, {"id": "y"}], {"fingerprint": "f00"})
    assert path.name == "shard-000000.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"fingerprint": "f00", "num_records": 2}
    shard = store.read_shard(path)
    assert shard.complete and [r["id"] for r in shard.records] == ["x", "y"]
    (tmp_path / "shard-000001.jsonl").write_text('{"num_records": 3}\n{"id": "z"}\n')  # garbage
    assert not store.read_shard(tmp_path / "shard-000001.jsonl").complete
    assert [r["id"] for r in store.records()] == ["x", "y", "z"]  # headers are never records
    (tmp_path / ".shard-000002.jsonl.abc.tmp").write_text("half")  # a write killed before its rename
    store.remove_partial_writes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000000.jsonl", "shard-000001.jsonl"]
    store.clear()
    assert list(tmp_path.iterdir()) == []


def test_replace_dir_and_lock(tmp_path):
    final = tmp_path / "out"
    for text in ("old", "new"):
        staging = tmp_path / f".staging-{text}"
        staging.mkdir()
        (staging / "f.txt").write_text(text)
        replace_dir(staging, final)
    assert (final / "f.txt").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out"]
    with exclusive_lock(tmp_path / ".lock", "use another folder"):
        pid = os.fork()
        if pid == 0:  # another process cannot take the lock
            try:
                with exclusive_lock(tmp_path / ".lock"):
                    os._exit(1)
            except RuntimeError:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
    with exclusive_lock(tmp_path / ".lock"):  # released
        pass
    with pytest.raises(FileNotFoundError):
        replace_dir(tmp_path / "missing", final)
