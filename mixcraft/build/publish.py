"""Remote output: a build written to an fsspec URL (`--out s3://bucket/prolong`, `gs://`,
`file://`, ...) is built in a local staging folder, then uploaded; manifest.json goes last, so
a reader never sees a manifest whose shards are not there yet. Each file's size is checked
after the upload. The trainer reads the result with `data.path: <the URL>`."""

from __future__ import annotations

from pathlib import Path

import fsspec

from mixcraft.core.outdir import MANIFEST, WORK_DIR
from mixcraft.errors import UserError


def is_url(out: str) -> bool:
    return "://" in out


def publish(local: Path, url: str) -> int:
    """Upload every output file of `local` (not its .mixcraft work folder) to `url`; returns the
    number of files."""
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise UserError(f"--out {url}: {exc} (a URL needs its fsspec driver, e.g. pip install s3fs)") from None
    files = sorted(p for p in local.rglob("*") if p.is_file() and WORK_DIR not in p.relative_to(local).parts)
    files.sort(key=lambda p: p.name == MANIFEST)  # the manifest last
    for path in files:
        rel = path.relative_to(local).as_posix()
        target = f"{root.rstrip('/')}/{rel}"
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(path), target)
        if fs.size(target) != path.stat().st_size:
            raise UserError(f"{url}/{rel}: uploaded {fs.size(target):,} bytes of {path.stat().st_size:,}; re-run the "
                            "same command to upload again")
    return len(files)
