"""A length curriculum as stages of one recipe (Llama 2 Long §4.4: training at 4K first and
switching to 32K after 20/40/80% of the tokens saves about 40% of the FLOPs at equal quality).

    seq_len: 32768
    total_tokens: 400_000_000_000
    stages:
      - {name: 4k, seq_len: 4096, share: 0.2}     # the first 20% of the tokens in 4K rows
      - {name: 32k, seq_len: 32768, share: 0.8}

Each stage is the recipe with its own `seq_len` and `total_tokens x share`, built as a complete
output of its own in OUT/<stage>/ (manifest, shards; train on them in order). Documents are
split between the stages by a seeded hash, in proportion to the shares, so no document is
used in two stages; in a stage, the others are counted as dropped (`other_stage`).
OUT/curriculum.json lists the stages in training order.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from mixcraft.errors import UserError

STAGE_KEYS = {"name": str, "seq_len": int, "share": (int, float)}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SHARE_TOLERANCE = 1e-6


def parse_stages(ctx: Any, recipe: Any, data: dict[str, Any], base: Path) -> None:
    """Validate `stages:` and resolve each stage's recipe (errors surface at load time)."""
    raw = data.get("stages")
    recipe._stage_recipes = []
    if raw is None:
        return
    from mixcraft.recipe import check_keys

    if len(raw) < 2:
        raise ctx.fail("stages", "a curriculum needs at least two stages (with one, remove `stages` and set seq_len)")
    specs, lo = [], 0.0
    for i, st in enumerate(raw):
        check_keys(ctx, f"stages[{i}]", st, STAGE_KEYS, required=("name", "seq_len", "share"))
        where = f"stages[{st['name']}]"
        if not _NAME.match(st["name"]):
            raise ctx.fail(f"{where}.name", "use letters, digits, '-', '_' or '.' (it names the stage's folder)")
        if st["seq_len"] <= 0 or not 0 < st["share"] <= 1:
            raise ctx.fail(where, f"seq_len must be positive and share in (0, 1], got {st['seq_len']} and {st['share']}")
        specs.append({"name": st["name"], "index": i, "seq_len": st["seq_len"], "share": float(st["share"]),
                      "lo": lo, "hi": lo + float(st["share"])})
        lo += float(st["share"])
    names = [s["name"] for s in specs]
    if len(set(names)) != len(names):
        raise ctx.fail("stages", f"stage names repeat: {names}")
    if abs(lo - 1.0) > SHARE_TOLERANCE:
        listing = ", ".join(f"{s['name']}={s['share']:g}" for s in specs)
        raise ctx.fail("stages", f"shares sum to {lo:.6g}, not 1 ({listing})")
    specs[-1]["hi"] = 1.0
    if specs[-1]["seq_len"] != recipe.seq_len:
        raise ctx.fail(f"stages[{names[-1]}].seq_len", f"{specs[-1]['seq_len']} differs from the recipe's seq_len "
                       f"{recipe.seq_len}; the last stage trains at the recipe's length")
    recipe.stages = [{k: s[k] for k in ("name", "seq_len", "share")} for s in specs]
    recipe._stage_recipes = [_stage_recipe(ctx, data, base, spec, len(specs)) for spec in specs]


def _stage_recipe(ctx: Any, data: dict[str, Any], base: Path, spec: dict[str, Any], n_stages: int):
    from mixcraft.recipe import parse_recipe

    d = copy.deepcopy(data)
    d.pop("stages")
    d["name"] = f"{data['name']}-{spec['name']}"
    d["seq_len"] = spec["seq_len"]
    if data.get("total_tokens") is not None:
        d["total_tokens"] = round(data["total_tokens"] * spec["share"])
    try:
        r = parse_recipe(d, ctx.file, base)
    except UserError as exc:
        detail = str(exc).removeprefix(f"{ctx.file}: ")
        raise ctx.fail(f"stages[{spec['name']}] (seq_len {spec['seq_len']:,})", detail) from None
    r.stage = {**spec, "of": n_stages}
    return r


def stage_recipes(recipe: Any) -> list[Any]:
    """The recipe of each stage in training order; empty without `stages`."""
    return list(getattr(recipe, "_stage_recipes", []))


def build_curriculum(recipe: Any, out: Path, **build_kwargs: Any) -> list[dict[str, Any]]:
    """Build every stage into OUT/<stage>/ and write OUT/curriculum.json; returns the manifests."""
    from mixcraft.build.run import build

    if (out / "manifest.json").is_file():
        raise UserError(f"{out}: holds a single-stage build; a curriculum needs its own --out folder")
    manifests = []
    for r in stage_recipes(recipe):
        manifests.append(build(r, out / r.stage["name"], **build_kwargs))
    stages = [{"name": r.stage["name"], "path": r.stage["name"], "seq_len": r.seq_len, "share": r.stage["share"],
               "target_tokens": r.total_tokens, "tokens": sum(s["tokens"] for s in m["streams"]),
               "rows": sum(s["rows"] for s in m["streams"])}
              for r, m in zip(stage_recipes(recipe), manifests, strict=True)]
    doc = {"recipe": {"name": recipe.name, "path": recipe.path, "sha256": recipe.digest()},
           "total_tokens": recipe.total_tokens, "stages": stages}
    (out / "curriculum.json").write_text(json.dumps(doc, indent=1) + "\n")
    return manifests


def load_curriculum(out: Path) -> dict[str, Any] | None:
    path = out / "curriculum.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); re-run the build to rewrite it") from None
