"""A 4K->32K-style curriculum, scaled down to 512->1024: one recipe, two stage outputs, the
documents split between the stages, stats and verify over the whole curriculum."""

import json

from mixcorpus import source, write_recipe

from mixcraft.build.load import load_recipe
from mixcraft.build.run import BuildOptions, build_curriculum
from mixcraft.report.verify import verify_output

STAGES = [{"name": "short", "seq_len": 512, "share": 0.3}, {"name": "full", "seq_len": 1024, "share": 0.7}]


def test_curriculum_builds_each_stage_on_its_own_documents(mix_corpus, tmp_path, mixcraft):
    recipe = write_recipe(tmp_path / "curriculum.yaml", {
        "name": "cur", "seed": 9, "seq_len": 1024, "stages": STAGES,
        "sources": [source("topics", "text", mix_corpus["topics"], proportion=0.5),
                    source("chat", "chat", mix_corpus["chat"], proportion=0.5, max_docs=200)]})
    out = tmp_path / "out"
    code, stdout, stderr = mixcraft("build", recipe, "--dry-run")
    assert code == 0, stderr
    assert "stage short (1 of 2): 30% of the tokens" in stdout and "seq_len 512" in stdout
    build_curriculum(load_recipe(recipe), out, BuildOptions(workers=2, show_progress=False))
    plan = json.loads((out / "curriculum.json").read_text())
    assert [(s["name"], s["seq_len"]) for s in plan["stages"]] == [("short", 512), ("full", 1024)]
    manifests = [json.loads((out / s["path"] / "manifest.json").read_text()) for s in plan["stages"]]
    assert [m["seq_len"] for m in manifests] == [512, 1024]
    for name in ("topics", "chat"):
        a, b = (m["ledger"][name]["docs"] for m in manifests)
        assert a["read"] == b["read"] > 0, "without a budget each stage reads the whole source"
        other_a, other_b = a["dropped"].get("other_stage", 0), b["dropped"].get("other_stage", 0)
        assert other_a + other_b == a["read"], "each document belongs to exactly one stage"
        assert 0.1 < (a["read"] - other_a) / a["read"] < 0.5, "the short stage gets about 30% of the documents"
    assert [s["stage"] for s in json.loads(mixcraft("stats", out, "--json")[1])["stages"]] == ["short", "full"]
    assert verify_output(out) == []
