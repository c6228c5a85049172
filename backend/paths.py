"""Where things live on disk: the project's assets and the per-user model cache."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"


def default_workspace() -> Path:
    """Runs, uploads and the dataset registry; the app sets TUNEFORGE_WORKSPACE for its jobs."""
    return Path(os.environ.get("TUNEFORGE_WORKSPACE", PROJECT_ROOT / "workspace"))


def model_cache_dir() -> Path:
    """Converted models live here; TUNEFORGE_CACHE moves it (tests and CI share one cache)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tuneforge"
    return Path(os.environ.get("TUNEFORGE_CACHE", default)) / "models"
