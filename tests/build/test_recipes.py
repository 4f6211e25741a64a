"""The shipped recipes against the papers' numbers, and `--dry-run` on each, offline.

ProLong (Gao et al. 2024, train_64K.sh / train_512K.sh): stage 1 is code 30%, books 30%,
textbooks 3% and ShortMix 37% (FineWeb 27%, FineWeb-Edu 27%, Wikipedia 10.8%, StackExchange
10.8%, Tulu-v2 8.1%, ArXiv 8.1%, OpenWebMath 8.1% of it); stage 2 splits code into 15% in 512K
rows + 15% as 64K chunks and books into 5% + 25%, the rest as in stage 1. Llama 2 Long: 32K
rows. Sources are recognised by name and dataset, so the test holds for any spelling of them.
"""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import cli_env
from mixcraft.build.load import load_recipe, parse_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SHORT = 0.37
SHORT_MIX = {"fineweb": 0.27, "fineweb_edu": 0.27, "wikipedia": 0.108, "stackexchange": 0.108, "tulu": 0.081,
             "arxiv": 0.081, "openwebmath": 0.081}
STAGE1 = {"code": 0.30, "books": 0.30, "textbooks": 0.03, **{k: SHORT * v for k, v in SHORT_MIX.items()}}
STAGE2 = {"code@512K": 0.15, "code@64K": 0.15, "books@512K": 0.05, "books@64K": 0.25, "textbooks": 0.03,
          **{k: SHORT * v for k, v in SHORT_MIX.items()}}
# The papers round the short shares to 0.1 pp of the ShortMix (10/37 = 27.03%, written 27%).
TOLERANCE = 0.001
# Ordered: the first rule a source matches names it ("stackexchange" before "stack").
KINDS = (("textbooks", ("textbook",)), ("fineweb_edu", ("edu",)), ("fineweb", ("fineweb",)),
         ("stackexchange", ("stackexchange", "stack_exchange")), ("tulu", ("tulu",)), ("arxiv", ("arxiv",)),
         ("openwebmath", ("math",)), ("wikipedia", ("wiki",)), ("books", ("book",)),
         ("code", ("code", "stack", "repo")))


def _kind(source) -> str:
    where = getattr(source.reader, "where", {})
    text = " ".join([source.name, str(getattr(source.reader, "dataset", "")), *map(str, where.values())]).lower()
    for kind, words in KINDS:
        if any(w in text for w in words):
            return kind
    raise AssertionError(f"cannot tell what source {source.name!r} is")


def _shares(recipe, by_bucket: bool) -> dict[str, float]:
    shares: dict[str, float] = {}
    for s in recipe.sources:
        kind = _kind(s)
        if by_bucket and all(b.proportion is not None for b in s.buckets):
            for b in s.buckets:
                key = f"{kind}@{b.chunk_tokens // 1024}K"
                shares[key] = shares.get(key, 0) + b.proportion
        else:
            shares[kind] = shares.get(kind, 0) + s.proportion
    return shares


def _load(name: str):
    path = RECIPES / name
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout yet")
    return load_recipe(path)


def test_prolong_stage1_proportions():
    recipe = _load("prolong.yaml")
    assert recipe.seq_len == 65536
    assert _shares(recipe, by_bucket=False) == pytest.approx(STAGE1, abs=TOLERANCE)


def test_prolong_512k_proportions_and_layout():
    recipe = _load("prolong-512k.yaml")
    assert recipe.seq_len == 524288
    assert _shares(recipe, by_bucket=True) == pytest.approx(STAGE2, abs=TOLERANCE)
    for s in recipe.sources:
        for b in s.buckets:
            if b.chunk_tokens == 65536:
                assert b.min_tokens == 65536 and recipe.seq_len // b.chunk_tokens == 8, "eight 64K chunks a row"


def test_prolong_sft_is_ultrachat_packed_to_64k_with_a_mask():
    recipe = _load("prolong-sft.yaml")
    (chat,) = recipe.sources
    assert recipe.seq_len == 65536 and chat.proportion == 1.0
    assert chat.reader.type_name == "chat" and chat.reader.dataset == "HuggingFaceH4/ultrachat_200k"


def test_llama2_long_knobs_and_curriculum():
    recipe = _load("llama2-long.yaml")
    assert recipe.seq_len == 32768 and sum(s.proportion for s in recipe.sources) == pytest.approx(1.0)
    assert recipe.long_text.upsample > 1 and recipe.long_text.remove is False
    assert all(s.long_text == recipe.long_text for s in recipe.sources)
    data = yaml.safe_load((RECIPES / "llama2-long.yaml").read_text())
    data["stages"] = [{"name": "4k", "seq_len": 4096, "share": 0.2}, {"name": "32k", "seq_len": 32768, "share": 0.8}]
    staged = parse_recipe(copy.deepcopy(data), "llama2-long.yaml", RECIPES)
    four_k, full = staged.stage_recipes
    assert (four_k.seq_len, full.seq_len) == (4096, 32768)
    assert four_k.total_tokens + full.total_tokens == recipe.total_tokens
    data["long_text"]["remove"] = True  # the "remove long" preset
    data["long_text"]["upsample"] = 1.0
    assert parse_recipe(data, "llama2-long.yaml", RECIPES).sources[0].long_text.remove is True


@pytest.mark.parametrize("name", ["prolong.yaml", "prolong-512k.yaml", "prolong-sft.yaml", "llama2-long.yaml"])
def test_dry_run_works_offline(name):
    path = RECIPES / name
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout yet")
    env = {**cli_env(), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "NO_PROXY": "*",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    res = subprocess.run([sys.executable, "-m", "mixcraft", "build", str(path), "--dry-run"], capture_output=True,
                         text=True, env=env, cwd=os.fspath(RECIPES.parent))
    assert res.returncode == 0, res.stderr
    assert "proportions sum to 1.0000" in res.stdout


def test_stage1_check_recognises_a_stage1_layout():
    """Guards the stage-1 test against passing vacuously while recipes/prolong.yaml is absent:
    stage 2 with each long source folded back into one 64K bucket is stage 1."""
    data = yaml.safe_load((RECIPES / "prolong-512k.yaml").read_text())
    data["seq_len"] = 65536
    for s in data["sources"]:
        if "buckets" in s:
            s["proportion"] = sum(b["proportion"] for b in s.pop("buckets"))
            s["buckets"] = [{"min_tokens": 65536}]
    recipe = parse_recipe(data, "stage1.yaml", RECIPES)
    assert _shares(recipe, by_bucket=False) == pytest.approx(STAGE1, abs=TOLERANCE)
    assert {_kind(s) for s in recipe.sources} == set(STAGE1)
