"""A dataset uploaded as a zip: its data file with the images beside it, unpacked into the uploads.

A data file with images names them relative to itself, so uploading the file alone would lose them.
The zip is unpacked into a folder of its own under the uploads: member names are rebuilt part by part
(backend.access.uploads.safe_name), so none points outside; only data files and images are taken; and
sizes are capped before anything is written, so a zip bomb is refused, not unpacked.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from backend.access.uploads import safe_name
from backend.data.images import IMAGE_SUFFIXES
from backend.data.readers import SUPPORTED_SUFFIXES
from backend.errors import TuneForgeError

MAX_MEMBERS = 100_000
MAX_TOTAL_BYTES = 4 << 30  # unpacked


def store_zip_dataset(source: str | Path, uploads_dir: str | Path) -> Path:
    """Unpack an uploaded zip into uploads_dir/<its name>/ and return the one data file in it."""
    source = Path(source)
    folder = Path(uploads_dir) / safe_name(source.stem + ".zip").removesuffix(".zip")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise TuneForgeError(f"{source.name}: not a readable zip ({exc})") from None
    with archive:
        members = _members(archive, source.name)
        data = [name for name in members if Path(name).suffix in SUPPORTED_SUFFIXES]
        if len(data) != 1:
            found = ", ".join(data[:5]) or "none"
            raise TuneForgeError(
                f"{source.name}: a dataset zip holds one data file ({', '.join(SUPPORTED_SUFFIXES)}) with its images; "
                f"found {found}"
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        for name, info in members.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as read, open(target, "wb") as write:
                shutil.copyfileobj(read, write)
    if folder.exists():
        shutil.rmtree(folder)  # the same zip uploaded again replaces its earlier copy
    staging.rename(folder)
    return folder / data[0]


def _members(archive: zipfile.ZipFile, zip_name: str) -> dict[str, zipfile.ZipInfo]:
    """Safe relative name → member, for the data files and images; other files (a __MACOSX folder) are left out."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > MAX_MEMBERS or sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
        raise TuneForgeError(f"{zip_name}: more than {MAX_MEMBERS:,} files or {MAX_TOTAL_BYTES >> 30} GB unpacked")
    taken = {}
    for info in infos:
        # Names are kept as written, since the data file names its images by them; only what could leave
        # the folder (.., a leading /, a drive, NUL) or hide (a leading dot) is refused.
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or parts[0].startswith("__MACOSX"):
            continue
        if info.filename.startswith("/") or any(p == ".." or p.startswith(".") or "\0" in p or ":" in p for p in parts):
            raise TuneForgeError(f"{zip_name}: member {info.filename[:80]!r} would unpack outside its folder")
        suffix = Path(parts[-1]).suffix.lower()
        if suffix in SUPPORTED_SUFFIXES or suffix in IMAGE_SUFFIXES:
            taken["/".join(parts)] = info
    return taken
