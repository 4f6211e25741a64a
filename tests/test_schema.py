"""The one config loader: types, ranges, tagged plug-ins, relative paths, overrides, bad YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import pytest

from mixcraft.errors import UserError
from mixcraft.schema import Invalid, Positive, Range, RelPath, Where, load, parse, to_data, with_overrides


class Plugin:
    type_name: ClassVar[str]


@dataclass(frozen=True)
class Alpha(Plugin):
    type_name: ClassVar[str] = "alpha"
    value: int = 1


@dataclass(frozen=True)
class Free(Plugin):
    type_name: ClassVar[str] = "free"
    extra_args: ClassVar[str] = "args"
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Inner:
    name: str
    share: Annotated[float, Range(gt=0, le=1)] = 1.0


@dataclass(frozen=True)
class Top:
    steps: Annotated[int, Positive]
    mode: Literal["fast", "slow"] = "fast"
    path: RelPath | None = None
    items: tuple[Inner, ...] = ()
    plugin: Plugin | None = None
    weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode == "slow" and self.steps > 10:
            raise Invalid("slow mode takes at most 10 steps", "steps")


REG = {Plugin: {"alpha": Alpha, "free": Free}}
W = Where("c.yaml", "", Path("/base"))


def test_builds_nested_frozen_dataclasses_with_relative_paths_and_plugins():
    cfg = parse(Top, {"steps": 3, "path": "data/x", "items": [{"name": "a", "share": 0.5}],
                      "plugin": {"type": "alpha", "value": 4}, "weights": {"a": 1}}, W, REG)
    assert cfg.path == "/base/data/x" and cfg.items == (Inner("a", 0.5),) and cfg.plugin == Alpha(4)
    assert cfg.weights == {"a": 1.0} and isinstance(cfg.weights["a"], float)
    with pytest.raises(AttributeError):
        cfg.steps = 4  # frozen
    assert to_data(cfg)["plugin"] == {"type": "alpha", "value": 4}


@pytest.mark.parametrize("raw,match", [
    ({"stpes": 3}, r"c\.yaml: stpes: unknown key 'stpes' \(did you mean 'steps'\?\)"),
    ({}, r"c\.yaml: steps: required key is missing"),
    ({"steps": 0}, r"c\.yaml: steps: must be > 0, got 0"),
    ({"steps": True}, r"steps: expected an integer, got True"),
    ({"steps": "3e2"}, r"steps: expected an integer, got '3e2' \(write a whole number"),
    ({"steps": 3, "mode": "fsat"}, r"mode: expected one of fast, slow, got 'fsat' \(did you mean 'fast'\?\)"),
    ({"steps": 3, "items": [{"name": "a", "share": 2}]}, r"items\[a\]\.share: must be <= 1, got 2"),
    ({"steps": 3, "items": [{"share": 0.5}]}, r"items\[0\]\.name: required key is missing"),
    ({"steps": 3, "items": [{"name": "a", "share": float("nan")}]}, r"items\[a\]\.share: must be a finite number"),
    ({"steps": 3, "plugin": {"type": "alhpa"}}, r"plugin\.type: unknown plugin type 'alhpa' \(did you mean 'alpha'\?\)"),
    ({"steps": 3, "plugin": {"type": "alpha", "vaule": 1}}, r"plugin\.vaule: unknown key"),
    ({"steps": 30, "mode": "slow"}, r"c\.yaml: steps: slow mode takes at most 10 steps"),
    ({"steps": 3, "weights": [1]}, r"weights: expected a mapping, got list"),
])
def test_every_mistake_is_one_line_with_file_and_yaml_path(raw, match):
    with pytest.raises(UserError, match=match):
        parse(Top, raw, W, REG)


def test_free_argument_plugins_collect_unknown_keys():
    cfg = parse(Top, {"steps": 1, "plugin": {"type": "free", "min_words": 50}}, W, REG)
    assert cfg.plugin == Free({"min_words": 50})


def test_overrides_go_through_the_same_checks(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("steps: 3\nitems: [{name: a}]\n")
    assert load(Top, p, "config", overrides=["steps=7", "mode=slow"]).steps == 7
    with pytest.raises(UserError, match=r"c\.yaml: steps: must be > 0, got -1"):
        load(Top, p, "config", overrides=["steps=-1"])
    with pytest.raises(UserError, match=r"--set 'steps': expected KEY=VALUE"):
        with_overrides({"steps": 1}, ["steps"], "c.yaml")


def test_duplicate_keys_and_alias_bombs_are_refused(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("steps: 3\nmode: fast\nsteps: 4\n")
    with pytest.raises(UserError, match=r"dup\.yaml:3: not valid YAML: duplicate key 'steps' \(first at line 1\)"):
        load(Top, p, "config")
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        bomb.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]")
    p.write_text("\n".join(bomb) + "\n")
    with pytest.raises(UserError, match=r"aliases \(\*name\) expand to 490,329,064 values"):
        load(Top, p, "config")


def test_missing_file_and_bad_bytes(tmp_path):
    with pytest.raises(UserError, match=r"nope\.yaml: config not found"):
        load(Top, tmp_path / "nope.yaml", "config")
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"steps: \xff\xfe\n")
    with pytest.raises(UserError, match=r"not UTF-8 text"):
        load(Top, p, "config")
