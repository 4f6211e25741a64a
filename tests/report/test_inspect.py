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
