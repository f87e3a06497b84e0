"""Where human driving logs come from: the shipped NGSIM pack, its fixed split, or a user's folder.

The pack (``data/ngsim/``: a tarball of CommonRoad scenario XML, its README and ``splits.json``)
ships in the repository, so nothing is downloaded. It is unpacked once into a cache folder
(``$DUALDRIVE_CACHE`` or ``~/.cache/dualdrive``) keyed by the tarball's hash; the unpacking
goes to a temporary folder renamed into place at the end, so an interrupted run never leaves
a half-unpacked set behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[2] / "data" / "ngsim"
TARBALL = "ngsim_commonroad_T-1.tar.xz"
SPLITS = ("train", "val", "test")


class HumanDataError(ValueError):
    """Human driving data that cannot be used: the message names the file and what to do."""


def cache_root() -> Path:
    return Path(os.environ.get("DUALDRIVE_CACHE", Path.home() / ".cache" / "dualdrive")).expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def unpacked_pack(pack_dir: Path = PACK_DIR) -> Path:
    """The folder holding the pack's XML files (unpacked on first use)."""
    tar = pack_dir / TARBALL
    if not tar.is_file():
        raise HumanDataError(f"the NGSIM pack {tar} is missing; it ships with the repository (data/ngsim/): "
                             "restore it with `git checkout -- data/ngsim`")
    dest = cache_root() / "ngsim" / _sha256(tar)[:16]
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        with tarfile.open(tar, "r:xz") as t:
            t.extractall(tmp, filter="data")  # the "data" filter refuses absolute paths and links out
        os.replace(tmp, dest)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise HumanDataError(f"cannot unpack {tar}: {e}; the file is damaged, restore it with "
                             "`git checkout -- data/ngsim`") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def split_files(split: str, pack_dir: Path = PACK_DIR) -> list[Path]:
    """The scenario files of one part of the pack's fixed split (train, val or test)."""
    if split not in SPLITS:
        raise HumanDataError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    try:
        splits = json.loads((pack_dir / "splits.json").read_text())["splits"]
    except (OSError, ValueError, KeyError) as e:
        raise HumanDataError(f"cannot read {pack_dir / 'splits.json'}: {e}; restore it with "
                             "`git checkout -- data/ngsim`") from None
    root = unpacked_pack(pack_dir)
    files = [root / rel for rel in splits[split]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise HumanDataError(f"splits.json names files the pack does not hold: {missing[:3]}; delete the cache "
                             f"folder {root} and run again")
    return files


def folder_files(folder: Path) -> list[Path]:
    """Every CommonRoad XML file under ``folder`` (searched recursively), sorted."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise HumanDataError(f"--scenarios {folder}: not a folder")
    files = sorted(p for p in folder.rglob("*.xml") if p.is_file())
    if not files:
        raise HumanDataError(f"--scenarios {folder}: no .xml files found (searched recursively); give a folder of "
                             "CommonRoad scenario files")
    return files
