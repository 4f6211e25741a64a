"""manifest.json is typed and versioned: a round trip keeps every field, and a manifest of
another version or one edited after the build is refused in one line."""

from __future__ import annotations

import json

import pytest

from helpers import rewrite_manifest
from mixcraft.core.manifest import MANIFEST_VERSION, read_manifest, write_manifest
from mixcraft.errors import UserError
from mixcraft.schema import to_data


def test_round_trip_keeps_every_field(small_build, tmp_path):
    out, data = small_build
    m = read_manifest(out)
    assert m.manifest_version == MANIFEST_VERSION and m.streams and m.premixed is not None
    assert set(m.indexes) == set(m.shards), "every subset's index.json has a digest"
    write_manifest(tmp_path, m)
    again = json.loads((tmp_path / "manifest.json").read_text())
    assert again == data and to_data(read_manifest(tmp_path)) == data


@pytest.mark.parametrize("version,match", [
    (1, r"manifest version 1 \(written by mixcraft 0\.0\.9\); this mixcraft reads version 2: rebuild"),
    (3, r"manifest version 3 .* reads version 2"),
])
def test_another_version_is_refused(small_build, tmp_path, version, match):
    _, data = small_build
    data = {**data, "manifest_version": version, "mixcraft_version": "0.0.9"}
    if version == 1:
        data.pop("manifest_version")
    rewrite_manifest(tmp_path, data)
    with pytest.raises(UserError, match=match):
        read_manifest(tmp_path)


def test_missing_manifest_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match=r"no manifest\.json here \(is this a `mixcraft build` output folder"):
        read_manifest(tmp_path)
