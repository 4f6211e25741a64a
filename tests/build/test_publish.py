"""A build written to an fsspec URL: built in a staging folder, uploaded with the manifest last,
the same bytes as a local build; readable back through fsspec (the trainer's `data.path`)."""

from __future__ import annotations

import fsspec
from buildhelp import output_hashes

from helpers import TINY_RECIPE, make_corpus, run_cli
from mixcraft.build.publish import publish


def test_build_to_a_file_url_equals_the_local_build(tmp_path):
    make_corpus(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    run_cli("build", tmp_path / "tiny.yaml", "--out", tmp_path / "local", check=True)
    remote = tmp_path / "bucket" / "tiny"
    res = run_cli("build", tmp_path / "tiny.yaml", "--out", f"file://{remote}", "--staging", tmp_path / "stage",
                  check=True)
    assert f"wrote file://{remote}" in res.stdout
    assert output_hashes(remote) == output_hashes(tmp_path / "local")
    assert not (remote / ".mixcraft").exists(), "the work folder stays local"


def test_publish_to_memory_puts_the_manifest_last(tmp_path, monkeypatch):
    (tmp_path / "a" / "0").mkdir(parents=True)
    (tmp_path / "a" / "0" / "shard.00000.mds").write_bytes(b"x" * 100)
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / ".mixcraft").mkdir()
    (tmp_path / ".mixcraft" / "lock").write_text("")
    order = []
    fs = fsspec.filesystem("memory")
    real = type(fs).put_file
    monkeypatch.setattr(type(fs), "put_file", lambda self, lpath, rpath, **kw: (order.append(rpath),
                                                                                  real(self, lpath, rpath, **kw)))
    assert publish(tmp_path, "memory://out/run") == 2
    assert order[-1].endswith("manifest.json") and fs.cat_file("/out/run/a/0/shard.00000.mds") == b"x" * 100
    assert not fs.exists("/out/run/.mixcraft/lock")
