"""Helpers for reader tests (tests/readers, tests/adversarial): run a reader as a build does,
record which files each task opens, measure a child process's peak memory."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from helpers import reader_config
from mixcraft.core.ledger import Ledger
from mixcraft.readers import make_reader

REPO = Path(__file__).resolve().parents[1]


def read_source(cfg: dict, tmp_path: Path, *, n_tasks: int = 1, strict: bool = False, name: str = "src",
                spy: OpenSpy | None = None):
    """All documents of a reader config over `n_tasks` tasks, and the tasks' ledgers, as a
    build runs them (the prepare pass and its stage first, then each task with its own ledger)."""
    cfg = reader_config(cfg, tmp_path)
    work = tmp_path / "work" / name
    stage = make_reader(name, cfg, Ledger(name, strict=strict), work_dir=work).prepare(work, n_tasks)
    if stage is not None:
        stage.run_here()
    docs, ledgers = [], []
    for task in range(n_tasks):
        if spy is not None:
            spy.task = task
        ledger = Ledger(name, strict=strict)
        reader = make_reader(name, cfg, ledger, work_dir=work)
        reader.task_units(task, n_tasks)
        docs += list(reader.read(task, n_tasks))
        ledgers.append(ledger)
    return docs, ledgers


def total(ledgers: list[Ledger], what: str = "notes") -> Counter:
    """The sum of one counter (`notes`, `docs_dropped`) over task ledgers."""
    return sum((getattr(led, what) for led in ledgers), start=Counter())


class _Counted:
    """A file object that counts the bytes read through it."""

    def __init__(self, f, spy: OpenSpy, key: tuple[int, str]):
        self._f, self._spy, self._key = f, spy, key

    def _count(self, data):
        self._spy.bytes[self._key] += len(data)
        return data

    def read(self, *args):
        return self._count(self._f.read(*args))

    def read1(self, *args):
        return self._count(self._f.read1(*args))

    def readline(self, *args):
        return self._count(self._f.readline(*args))

    def readinto(self, buf):
        n = self._f.readinto(buf)
        self._spy.bytes[self._key] += n or 0
        return n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


class OpenSpy:
    """Records every input opened through `mixcraft.core.records.open_raw`: which task opened
    which path, and how many bytes it read from it."""

    def __init__(self):
        self.task = -1  # set by read_source; -1: the prepare pass
        self.opened: dict[int, list[str]] = defaultdict(list)
        self.bytes: Counter = Counter()

    @contextlib.contextmanager
    def installed(self, monkeypatch):
        import mixcraft.core.records as records

        real = records.open_raw

        def open_raw(path):
            key = (self.task, str(path))
            self.opened[self.task].append(str(path))
            return _Counted(real(path), self, key)

        monkeypatch.setattr(records, "open_raw", open_raw)
        yield self

    def files_of(self, task: int) -> set[str]:
        return set(self.opened.get(task, []))


def peak_rss_mib(code: str, timeout: int = 120) -> float:
    """Run `code` in a fresh interpreter (worktree first on the path) and return its peak RSS
    (VmHWM, the process's own high-water mark) in MiB. The code must not print."""
    probe = code + "\nprint([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=timeout,
                         cwd=REPO, env={"PYTHONPATH": f"{REPO}:{REPO / 'tests'}", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1]) / 1024


STACK_COLUMNS = ("hexsha", "size", "ext", "lang", "max_stars_repo_path", "max_stars_repo_name",
                 "max_stars_repo_head_hexsha", "max_stars_repo_licenses", "max_stars_count", "content",
                 "avg_line_length", "max_line_length", "alphanum_fraction")


def write_stack_like(root: Path, *, n_repos: int, files_per_repo: int, n_data_files: int, seed: int = 0,
                     content_bytes: int = 400, extras: bool = True) -> list[dict]:
    """A folder laid out like The Stack v1's hub repository (data/<lang>/train-*.parquet, its
    columns), each repository's rows scattered over the data files in shuffled order. With
    `extras`: README first-in-order files, a lock file, a duplicated path, a binary file."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz_"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(5000)]  # compresses ~2x, as code
    rows = []
    for r in range(n_repos):
        repo = f"org{r % 7}/repo-{r:04d}"
        paths = [f"pkg/mod_{i:03d}.py" for i in range(files_per_repo)]
        if extras:
            paths += ["README.md", "Cargo.lock"] if r % 3 == 0 else ["src/zz.py"]
        for path in paths:
            picked = rng.choices(words, k=content_bytes // 5)
            body = "\n".join(" ".join(picked[i:i + 8]) for i in range(0, len(picked), 8)) + "\n"
            rows.append({"max_stars_repo_name": repo, "max_stars_repo_path": path, "content": body, "lang": "Python"})
        if extras and r % 5 == 0:  # the same path twice with other content: the first in sort order wins
            rows.append({"max_stars_repo_name": repo, "max_stars_repo_path": paths[0], "content": "A copy\n",
                         "lang": "Python"})
        if extras and r % 4 == 0:
            rows.append({"max_stars_repo_name": repo, "max_stars_repo_path": "logo.png", "content": "\x00PNG",
                         "lang": "Python"})
    rng.shuffle(rows)
    full = [{"hexsha": f"{i:040x}", "size": len(row["content"]), "ext": row["max_stars_repo_path"].rsplit(".", 1)[-1],
             "max_stars_repo_head_hexsha": "0" * 40, "max_stars_repo_licenses": ["MIT"], "max_stars_count": i % 50,
             "avg_line_length": 40.0, "max_line_length": 80, "alphanum_fraction": 0.7, **row}
            for i, row in enumerate(rows)]
    folder = root / "data" / "python"
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(n_data_files):
        part = full[f::n_data_files]
        table = pa.Table.from_pylist(part).select(list(STACK_COLUMNS))
        pq.write_table(table, folder / f"train-{f:05d}-of-{n_data_files:05d}.parquet")
    return rows
