"""Load a recipe file: YAML -> `Recipe` through the shared config loader, resolved, with the
recipe of each curriculum stage, and the check of its inputs before a build reads them.

Readers and filters are looked up by their `type` in the registries their packages publish;
they never import this module.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from mixcraft.core.recipe import FilterConfig, ReaderConfig, Recipe, StageInfo, resolve
from mixcraft.curate.filters import FILTERS
from mixcraft.errors import UserError
from mixcraft.readers import READER_CONFIGS
from mixcraft.schema import Where, read_yaml, with_overrides
from mixcraft.schema import parse as parse_config

REGISTRIES = {ReaderConfig: READER_CONFIGS, FilterConfig: FILTERS}
SHARE_TOLERANCE = 1e-6


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    path = Path(path)
    raw = with_overrides(read_yaml(path, "recipe"), overrides, str(path))
    return parse_recipe(raw, str(path), path.resolve().parent)


def parse_recipe(raw: object, file: str, base: Path) -> Recipe:
    """A recipe from parsed YAML; relative paths are taken against `base`."""
    where = Where(file, "", base)
    written = dataclasses.replace(parse_config(Recipe, raw, where, REGISTRIES), path=file)
    resolved = resolve(written, where)
    return dataclasses.replace(resolved, stage_recipes=tuple(_stage_recipes(written, where)))


def _stage_recipes(recipe: Recipe, where: Where) -> list[Recipe]:
    """Each curriculum stage as a recipe of its own: the stage's seq_len and share of the tokens."""
    stages = recipe.stages
    if not stages:
        return []
    if len(stages) < 2:
        raise where.at("stages").fail("a curriculum needs at least two stages (with one, remove `stages` and set "
                                      "seq_len)")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise where.at("stages").fail(f"stage names repeat: {names}")
    total = sum(s.share for s in stages)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        listing = ", ".join(f"{s.name}={s.share:g}" for s in stages)
        raise where.at("stages").fail(f"shares sum to {total:.6g}, not 1 ({listing})")
    if stages[-1].seq_len != recipe.seq_len:
        raise where.at("stages").item(names[-1]).at("seq_len").fail(
            f"{stages[-1].seq_len} differs from the recipe's seq_len {recipe.seq_len}; the last stage trains at "
            "the recipe's length")
    out, lo = [], 0.0
    for i, st in enumerate(stages):
        hi = 1.0 if i == len(stages) - 1 else lo + st.share
        info = StageInfo(name=st.name, index=i, of=len(stages), seq_len=st.seq_len, share=st.share, lo=lo, hi=hi)
        total_tokens = None if recipe.total_tokens is None else round(recipe.total_tokens * st.share)
        stage = dataclasses.replace(recipe, name=f"{recipe.name}-{st.name}", seq_len=st.seq_len,
                                    total_tokens=total_tokens, stages=())
        try:
            out.append(resolve(stage, where, info))
        except UserError as exc:
            detail = str(exc).removeprefix(f"{where.file}: ")
            raise where.at("stages").item(st.name).fail(f"at seq_len {st.seq_len:,}: {detail}") from None
        lo += st.share
    return out


def check_inputs(recipe: Recipe) -> None:
    """Every local input a build will read exists and has a readable format; else one line
    naming the YAML path (so `--dry-run` works before the data is there, and a build fails
    before it writes anything)."""
    where = Where(recipe.path)
    for s in recipe.sources:
        at = where.at("sources").item(s.name)
        for key, msg in s.reader.input_problems():
            raise at.at("reader").at(key).fail(msg)
        for i, f in enumerate(s.filters):
            for key, msg in f.input_problems():
                raise at.at("filters").at(i).at(key).fail(msg)


def write_resolved(recipe: Recipe, path: Path) -> None:
    header = f"# {recipe.path} with every default filled in; proportions are shares of the whole mixture.\n"
    path.write_text(header + yaml.safe_dump(recipe.to_data(), sort_keys=False), encoding="utf-8")
