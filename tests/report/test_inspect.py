"""`mixcraft inspect OUT --source S --row N`: each document piece of a packed row with its
span (so every document boundary), its text, and for chat rows the tokens in the loss."""

import re

import numpy as np
import pytest

TITLE = re.compile(r"piece (\d+)\s+\[([\d,]+), ([\d,]+)\)\s+([\d,]+) tokens(?:\s+loss on ([\d,]+) tokens)?")


def _row(out, path, n):
    from mixcraft.mds import read_row

    return read_row(out / path, n)


def _titles(stdout):
    found = [tuple(int(g.replace(",", "")) if g else None for g in m.groups()) for m in TITLE.finditer(stdout)]
    assert found, f"no piece titles in:\n{stdout}"
    return found


def _row_with_boundaries(out, manifest, source):
    stream = next(s for s in manifest["streams"] if s["source"] == source)
    for n in range(stream["rows"]):
        if len(_row(out, stream["path"], n)["indices"]) >= 3:
            return stream["path"], n
    pytest.fail(f"no row of {source} holds three documents")


def test_shows_every_document_boundary_of_a_packed_row(small_build, run_cli):
    out, manifest = small_build
    path, n = _row_with_boundaries(out, manifest, "docs")
    row = _row(out, path, n)
    res = run_cli("inspect", out, "--source", "docs", "--row", n, "--chars", 30)
    assert res.returncode == 0, res.stderr
    spans = row["indices"].tolist()
    assert f"{path} row {n}: 1,024 tokens, {len(spans)} pieces ({len(spans) - 1} document boundaries)" in res.stdout
    titles = _titles(res.stdout)
    assert [(a, b) for _, a, b, _, _ in titles] == [tuple(s) for s in spans]
    assert all(k == i and b - a == t for i, (k, a, b, t, _) in enumerate(titles))
    ruler = next(line for line in res.stdout.splitlines() if line.startswith("|"))
    assert ruler.count("|") == len(spans) + 1, "one mark per boundary, plus both ends"

    from mixcraft.core.tokenize import load_tokenizer

    tok = load_tokenizer(manifest["tokenizer"]["name"])
    ids = np.asarray(row["input_ids"])
    for a, b in spans:  # each piece's opening words are shown
        words = tok.decode(ids[a:b]).split()
        if words:
            assert words[0][:20] in res.stdout


def test_chat_rows_show_which_tokens_count_in_the_loss(small_build, run_cli):
    out, manifest = small_build
    path, n = _row_with_boundaries(out, manifest, "chat")
    row = _row(out, path, n)
    res = run_cli("inspect", out, "--source", "chat", "--row", n)
    assert res.returncode == 0, res.stderr
    mask = np.asarray(row["mask"])
    titles = _titles(res.stdout)
    assert [loss for *_, loss in titles] == [int(mask[a:b].sum()) for a, b in row["indices"].tolist()]
    assert 0 < mask.sum() < len(mask), "assistant turns count, headers and user turns do not"


def test_premixed_rows_and_errors(small_build, run_cli):
    out, manifest = small_build
    res = run_cli("inspect", out, "--source", "premixed", "--row", 0)
    assert res.returncode == 0, res.stderr
    assert "premixed row 0: 1,024 tokens" in res.stdout
    rows = manifest["streams"][0]["rows"]
    bad = run_cli("inspect", out, "--source", "docs", "--row", rows)
    assert bad.returncode == 2 and f"row {rows} out of range (the subset has {rows} rows)" in bad.stderr
    unknown = run_cli("inspect", out, "--source", "dcos")
    assert unknown.returncode == 2
    assert "--source 'dcos': no such source in this build (have: chat, docs)" in unknown.stderr


# The document line of a panel: "ID: the whole document" or "ID: document tokens [a, b) of n".
DOC_LINE = re.compile(r"│ (\S+): (?:the (whole) document|document tokens \[([\d,]+), ([\d,]+)\) of ([\d,]+))")


def _num(text):
    return int(text.replace(",", ""))


def _doc_lines(stdout):
    return [(m[1], 0 if m[2] else _num(m[3]), None if m[2] else _num(m[4])) for m in DOC_LINE.finditer(stdout)]


def _records(path):
    import json

    with open(path) as f:
        return {r["id"]: r["text"] for r in map(json.loads, f)}


def test_every_piece_names_its_document_and_its_tokens(small_build, tok, run_cli):
    """Checked against the source itself: the named record, tokenized, holds the piece's tokens
    at the offsets shown."""
    from mixcraft.mds import row_of

    out, manifest = small_build
    texts = _records(next(p for p in (out.parent / "corpus").glob("short.jsonl")))
    stream = next(s for s in manifest["streams"] if s["source"] == "docs")
    checked = 0
    for n in range(min(stream["rows"], 4)):
        row = row_of(_row(out, stream["path"], n))
        res = run_cli("inspect", out, "--source", "docs", "--row", n, "--chars", 20)
        lines = _doc_lines(res.stdout)
        assert [d for d, _, _ in lines] == list(row.doc_ids), "one document line per piece, in order"
        for (doc_id, start, end), (a, b) in zip(lines, row.spans.tolist(), strict=True):
            ids = tok.encode(texts[doc_id])
            end = len(ids) if end is None else end
            assert end - start == b - a
            assert np.array_equal(ids[start:end], row.input_ids[a:b])
            checked += 1
    assert checked >= 8


def test_pieces_continuing_across_rows_are_marked_both_ways(small_build, run_cli):
    from mixcraft.mds import iter_rows, row_of

    out, manifest = small_build
    path = next(s["path"] for s in manifest["streams"] if s["source"] == "docs")
    rows = [row_of(r) for r in iter_rows(out / path)]
    n = next(i for i, r in enumerate(rows) if i and r.doc_offsets[0][0] > 0)  # greedy: the tail of row i - 1's last
    here = run_cli("inspect", out, "--source", "docs", "--row", n).stdout
    before = run_cli("inspect", out, "--source", "docs", "--row", n - 1).stdout
    assert f"↩ continues from row {n - 1}" in here
    assert f"↪ continues into row {n}" in before
    whole = sum(start == 0 and end == total for r in rows[n - 1:n + 1]
                for (start, total), (a, b) in zip(r.doc_offsets, r.spans.tolist(), strict=True)
                for end in [start + b - a])
    assert (here + before).count("the whole document") == whole > 0
    assert (here + before).count("↩") + (here + before).count("↪") == sum(
        (r.doc_offsets[0][0] > 0) + (r.doc_offsets[-1][0] + int(r.spans[-1, 1] - r.spans[-1, 0]) < r.doc_offsets[-1][1])
        for r in rows[n - 1:n + 1]), "marks only on the first and last piece, and only where a document is cut"


@pytest.fixture(scope="module")
def bestfit_build(mix_corpus, tmp_path_factory):
    """Best-fit rows of 256 tokens: padded rows, and docstrings longer than a row whose
    remainder waits for a row it fits."""
    from mixcorpus import build_recipe, source, write_recipe

    root = tmp_path_factory.mktemp("bestfit")
    recipe = write_recipe(root / "bf.yaml", {
        "name": "bf", "seed": 2, "seq_len": 256, "sources": [
            source("docs", "text", mix_corpus["short"], proportion=1.0, packing="best_fit", max_docs=120)]})
    out = root / "out"
    build_recipe(recipe, out)
    return out


def test_padding_is_labelled_padding_and_remainders_come_from_earlier_rows(bestfit_build, run_cli):
    from mixcraft.mds import iter_rows, row_of

    out = bestfit_build
    rows = [row_of(r) for r in iter_rows(out / "docs" / "256")]
    n = next(i for i, r in enumerate(rows) if r.padding and len(r.spans) >= 3)
    res = run_cli("inspect", out, "--row", n)
    row = rows[n]
    a, b = row.spans[-1].tolist()
    assert f"{len(row.spans) - 1} pieces and {row.padding:,} padding tokens" in res.stdout
    assert f"padding  [{a:,}, {b:,})  {b - a:,} tokens" in res.stdout
    assert [k for k, *_ in _titles(res.stdout)] == list(range(len(row.spans) - 1)), "padding is not a piece"
    assert next(line for line in res.stdout.splitlines() if line.startswith("|")).endswith("░|")
    # A long docstring: full rows at once, its remainder placed later where it fits.
    m = next(i for i, r in enumerate(rows) if any(s > 0 for k, (s, _) in enumerate(r.doc_offsets)
                                                  if not (i and k == 0 and rows[i - 1].doc_ids[-1] == r.doc_ids[0])))
    shown = run_cli("inspect", out, "--row", m).stdout
    assert "↩ continues from an earlier row" in shown


def test_chunk_buckets_name_the_tail_and_chunks_of_one_document(layout_build, run_cli):
    """Four 256-token chunks a row: consecutive chunks of one document continue each other, and a
    rest shorter than a chunk is the tail, never packed."""
    out, _ = layout_build
    text = "".join(run_cli("inspect", out, "--source", "topics", "--bucket", "256x4", "--row", n).stdout
                   for n in range(6))
    assert "continued by piece" in text and "continues piece" in text
    assert re.search(r"its last [\d,]+ tokens are its tail: shorter than a chunk", text)
