"""End to end: a CLI build of a tiny recipe over real text, read back by StreamingDataset."""

import json

import numpy as np
import pytest
import yaml

from helpers import REPO, TINY_RECIPE, make_corpus, reader_config, run_cli
from mixcraft.core.ledger import ledger_faults


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    make_corpus(root)
    (root / "tiny.yaml").write_text(TINY_RECIPE)
    out = root / "out"
    proc = run_cli("build", str(root / "tiny.yaml"), "--out", str(out), "--workers", "2", check=True)
    return out, proc


def test_build_writes_the_output_contract(built):
    out, proc = built
    assert (out / "recipe.resolved.yaml").is_file()
    resolved = yaml.safe_load((out / "recipe.resolved.yaml").read_text())
    assert resolved["tokenizer"] == "llama3" and resolved["output"]["compression"] == "zstd"
    m = json.loads((out / "manifest.json").read_text())
    assert m["tokenizer"]["name"] == "llama3" and len(m["tokenizer"]["file_sha256"]) == 64
    assert m["seed"] == 7 and m["seq_len"] == 1024
    assert {(s["source"], s["bucket"]) for s in m["streams"]} == {("code", "1024"), ("books", "512"),
                                                                    ("short", "1024")}
    for s in m["streams"]:
        assert (out / s["path"] / "index.json").is_file()
        assert s["rows"] > 0, f"{s['path']} got no rows; the fixture is too small"
    assert "short" in proc.stdout and "code" in proc.stdout  # the stats table


def test_every_subset_reads_back_through_streaming(built):
    from streaming import StreamingDataset

    out, _ = built
    m = json.loads((out / "manifest.json").read_text())
    for s in m["streams"]:
        ds = StreamingDataset(local=str(out / s["path"]), shuffle=False, batch_size=1)
        assert ds.num_samples == s["rows"]
        total = 0
        for i in range(ds.num_samples):
            row = ds[i]
            ids = row["input_ids"]
            spans = np.asarray(row["indices"]).reshape(-1, 2)
            assert ids.dtype == np.uint32 and row["length"] == len(ids) == 1024
            assert spans[0, 0] == 0 and spans[-1, 1] == len(ids)
            assert (spans[1:, 0] == spans[:-1, 1]).all() and (spans[:, 1] > spans[:, 0]).all()
            assert row["domain"] == s["source"]
            total += len(ids)
        assert total == s["tokens"]


def test_ledger_adds_up_and_counts_skips(built):
    out, _ = built
    m = json.loads((out / "manifest.json").read_text())
    for name, led in m["ledger"].items():
        assert ledger_faults(name, led) == []
        assert led["docs"]["read"] > 0
        packed = sum(s["tokens"] for s in m["streams"] if s["source"] == name)
        assert led["tokens"]["packed"] == packed
    assert m["ledger"]["short"]["docs"]["dropped"]["malformed_json"] == 1
    assert m["ledger"]["books"]["docs"]["dropped"]["too_short"] == 1  # tiny.txt, below every bucket
    assert m["ledger"]["code"]["docs"]["read"] == 2  # json and wsgiref, one document each


def test_verify_passes_on_a_fresh_build(built):
    out, _ = built
    proc = run_cli("verify", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


def test_stats_json(built):
    out, _ = built
    proc = run_cli("stats", str(out), "--json", check=True)
    data = json.loads(proc.stdout)
    assert {r["source"] for r in data["streams"]} == {"code", "books", "short"}
    assert abs(sum(r["actual"] for r in data["streams"]) - 1) < 1e-9


def test_inspect_shows_the_pieces_of_a_row(built):
    out, _ = built
    proc = run_cli("inspect", str(out), "--source", "short", "--row", "0", check=True)
    assert "piece 0" in proc.stdout and "[0," in proc.stdout


def test_rebuilding_into_a_foreign_folder_is_refused(tiny_recipe, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something.txt").write_text("x")
    proc = run_cli("build", str(tiny_recipe), "--out", str(out))
    assert proc.returncode == 2 and "not empty" in proc.stderr and "Traceback" not in proc.stderr


def test_limit_reads_at_most_n_documents_per_source(tiny_recipe, tmp_path):
    out = tmp_path / "lim"
    run_cli("build", str(tiny_recipe), "--out", str(out), "--limit", "3", check=True)
    m = json.loads((out / "manifest.json").read_text())
    assert m["ledger"]["short"]["docs"]["read"] <= 3


def test_demo_recipe_end_to_end_on_a_few_documents(tmp_path):
    """The shipped demo recipe, over its real corpus, a few documents per source."""
    if not (REPO / ".cache/demo/code").is_dir():
        pytest.skip("demo corpus not fetched (make test fetches it)")
    out = tmp_path / "demo"
    run_cli("build", str(REPO / "recipes/demo.yaml"), "--out", str(out), "--limit", "6", "--workers", "2",
            check=True)
    run_cli("verify", str(out), check=True)
    m = json.loads((out / "manifest.json").read_text())
    assert {s["source"] for s in m["streams"]} == {"code_repos", "books", "textbooks", "doc_pages", "changelogs"}
    for name, led in m["ledger"].items():
        assert 0 < led["docs"]["read"] <= 6, name


def test_budget_is_shared_by_the_tasks_that_get_input(tmp_path, monkeypatch):
    """A streamed dataset (one without data files) is split over every task; a lone file goes to
    one task."""
    import mixcraft.readers.datafiles as df
    from mixcraft.core.ledger import Ledger
    from mixcraft.readers import make_reader

    monkeypatch.setattr(df, "resolve", lambda cfg, n_tasks=1: df.DatasetFiles(None, "custom", n_tasks))
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    one_file = make_reader("s", reader_config({"type": "text", "paths": [str(tmp_path / "a.jsonl")]}), Ledger("s"))
    streamed = make_reader("s", reader_config({"type": "hf", "dataset": "org/custom"}), Ledger("s"))
    assert one_file.active_tasks(8) == 1
    assert streamed.active_tasks(8) == 8
