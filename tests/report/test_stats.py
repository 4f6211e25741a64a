"""`mixcraft stats`: actual vs target per source and bucket, document lengths, the reason for
every deviation over 1 pp, `--json`, `--streams`, and the `--report` plots and HTML page."""

import base64
import json
import re

import pytest

from helpers import spawn_cli
from mixcraft.core.lengths import LengthHistogram
from mixcraft.core.manifest import Manifest, read_manifest
from mixcraft.report.explain import explain_deviations
from mixcraft.report.summary import source_rows, summarize
from mixcraft.schema import Where, parse

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _stats_json(mixcraft, out):
    code, stdout, stderr = mixcraft("stats", out, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


def test_within_one_point_where_budgets_allow(layout_build, mixcraft):
    """Every source, and every bucket with its own proportion (the stage-2 layout), lands within
    1 pp of its target, and stats has nothing to explain."""
    out, manifest = layout_build
    stats = _stats_json(mixcraft, out)
    assert len(stats["sources"]) == 4
    for row in stats["sources"]:
        assert abs(row["deviation_pp"]) <= 1.0, row
    buckets = {s["bucket"]: s for s in stats["streams"] if s["source"] == "topics"}
    assert buckets["1024"]["target"] == pytest.approx(0.2) and buckets["256x4"]["target"] == pytest.approx(0.03)
    for s in buckets.values():
        assert s["rows"] > 0 and abs(s["deviation_pp"]) <= 1.0, s
    assert stats["why"] == {}


def test_the_chunk_bucket_holds_four_chunks_a_row(layout_build):
    from streaming import StreamingDataset

    from mixcraft.report.verify import verify_output

    out, manifest = layout_build
    assert verify_output(out) == [], "including the pre-mixed subset, where two buckets share a domain"
    assert sum(s["domain"] == "topics" for s in manifest["premixed"]["streams"]) == 2
    ds = StreamingDataset(local=str(out / "topics" / "256x4"), shuffle=False, batch_size=1)
    assert ds.num_samples > 0
    for i in range(ds.num_samples):
        spans = ds[i]["indices"].reshape(-1, 2)
        assert spans.tolist() == [[0, 256], [256, 512], [512, 768], [768, 1024]]


def test_deviations_are_explained(knobs_build, mixcraft):
    out, manifest = knobs_build
    stats = _stats_json(mixcraft, out)
    why = stats["why"]
    thin = next(r for r in stats["sources"] if r["source"] == "thin")
    assert thin["deviation_pp"] < -1 and thin["repeated"] == 1 and thin["passes"] == 2
    assert re.fullmatch(rf"budget not reached: source exhausted in 2 passes \(repeat 2\) after {thin['tokens']:,} "
                        r"tokens of 18,000 needed; raise `repeat` to upsample it, add input, or lower total_tokens",
                        why["thin"]), why["thin"]
    assert why["books"].startswith("capped by max_tokens 15,000 (the proportion asks for 24,000 tokens)")
    for row in stats["sources"]:
        if row["deviation_pp"] > 1:
            assert "books, thin fell short of their targets" in why[row["source"]]
        assert (abs(row["deviation_pp"]) > 1) == (row["source"] in why)
    docs = next(r for r in stats["sources"] if r["source"] == "docs")
    assert docs["dropped"]["sampled_out"] > 0


def test_length_columns_come_from_the_histograms(knobs_build):
    out, manifest = knobs_build
    stats = summarize(read_manifest(out)).to_data()
    for s, row in zip(manifest["streams"], stats["streams"], strict=True):
        h = LengthHistogram.from_dict(s["doc_lengths"])
        assert h.n == s["docs"] > 0, "one length per kept document"
        assert row["len_mean"] == pytest.approx(h.total / h.n)
        assert h.min <= row["len_median"] <= row["len_p90"] <= h.max


def test_table_output_names_the_reasons(knobs_build):
    """A real `mixcraft stats` process, as a user runs it."""
    out, _ = knobs_build
    res = spawn_cli("stats", out)  # a pipe, as a script reads it
    assert res.returncode == 0, res.stderr
    assert "thin: off target: budget not reached: source exhausted" in " ".join(res.stdout.split())
    for col in ("target", "actual", "dev pp", "median", "p90", "padding", "dropped"):
        assert col in res.stdout


def test_streams_work_as_prolong_path_at_proportion(knobs_build, mixcraft):
    """Parse `--streams` as ProLong's training/dataset.py does and mix the streams with streaming."""
    from streaming import Stream, StreamingDataset

    out, manifest = knobs_build
    lines = mixcraft("stats", out, "--streams")[1].split()
    assert lines == [f"{out}/{s['path']}@{s['proportion']:.6g}" for s in manifest["streams"]]
    streams = []
    for line in lines:
        path, proportion = line.split("@", 1)
        streams.append(Stream(local=path, proportion=float(proportion)))
    ds = StreamingDataset(streams=streams, shuffle=True, shuffle_seed=1, batch_size=1, epoch_size=200)
    domains = [ds[i]["domain"] for i in range(ds.num_samples)]
    assert set(domains) == {s["domain"] for s in manifest["streams"]}
    for s in manifest["streams"]:
        assert {"path", "proportion", "rows"} <= set(s), "what the bundled trainer reads"


def test_report_writes_readable_pngs_and_a_self_contained_page(knobs_build, tmp_path, mixcraft):
    out, _ = knobs_build
    report = tmp_path / "report"
    code, stdout, stderr = mixcraft("stats", out, "--json", "--report", report)
    assert code == 0, stderr
    json.loads(stdout)  # the notes went to stderr, stdout stays JSON
    assert "report.html" in stderr
    page = (report / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for name in ("mixture.png", "drop_reasons.png", "doc_lengths.png", "row_pieces.png"):
        data = (report / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
        assert f"data:image/png;base64,{base64.b64encode(data).decode()}" in page, f"{name} not embedded"
    assert "src=\"http" not in page and "<link" not in page, "no external assets"
    assert "thin</b>: budget not reached" in page and "<table>" in page


def test_a_long_bucket_that_runs_short_is_named():
    """ProLong's 512K layout when too few books reach 512K tokens: the 64K bucket fills, the
    512K one does not, and the reason says so."""
    def stream(source, bucket, tokens, target_tokens, proportion):
        return {"source": source, "bucket": bucket, "path": f"{source}/{bucket}", "tokens": tokens, "rows": 1,
                "docs": 1, "split": 0, "padding": 0, "tail_tokens": 0, "proportion": proportion,
                "target_proportion": proportion, "target_tokens": target_tokens, "domain": source, "mask": False,
                "packing": "prolong", "pieces": 1}

    def summary(proportion, reached, buckets):
        return {"proportion": proportion, "budget_tokens": 50_000, "tasks": 1, "tasks_budget_reached": reached,
                "bucket_proportions": buckets, "bucket_min_tokens": {b: int(b) for b in buckets}, "repeat": 1.0,
                "max_tokens": None, "max_docs": None, "long_text": None, "passes": 1, "docs_repeated": 0,
                "tokens_repeated": 0}

    led = {"docs": {"read": 10, "kept": 9, "split": 0, "dropped": {"too_short": 1}}, "notes": {}, "examples": {},
           "tokens": {"kept": 0, "packed": 0, "tail": 0, "dropped": {"too_short": 5000}}, "budget_reached": False}
    manifest = parse(Manifest, {
        "manifest_version": 2, "mixcraft_version": "test", "recipe": {"name": "r", "path": "r.yaml", "sha256": ""},
        "tokenizer": {"name": "t", "file": None, "file_sha256": "", "vocab_size": 10, "backend": "hf"},
        "seed": 0, "prolong_streams": [], "shards": {},
        "seq_len": 1024, "total_tokens": 100_000, "ledger": {"books": led, "web": dict(led, budget_reached=True)},
        "streams": [stream("books", "4096", 2048, 20_000, 0.2), stream("books", "1024", 30_000, 30_000, 0.3),
                    stream("web", "1024", 50_000, 50_000, 0.5)],
        "sources": {"books": summary(0.5, 0, {"4096": 0.2, "1024": 0.3}), "web": summary(0.5, 1, {"1024": None})},
    }, Where("manifest.json"))
    why = explain_deviations(source_rows(manifest), manifest)
    assert why["books"] == ("budget not reached: source exhausted after 32,048 tokens of 50,000 needed; bucket 4096 "
                            "got 2,048 of 20,000 tokens (documents of >= 4,096 tokens ran out) (dropped: too_short "
                            "1 docs / 5,000 tokens); raise `repeat` to upsample it, add input, or lower total_tokens")
    assert why["web"].startswith("on budget (50,000 of 50,000 tokens), but books fell short of its target")
