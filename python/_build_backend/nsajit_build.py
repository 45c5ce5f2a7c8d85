"""A tiny in-tree PEP 517 / PEP 660 build backend for the nsajit Python package.

Why: `pip install -e python` must work offline. With the usual setuptools backend pip
first downloads setuptools into an isolated build environment; this backend needs
nothing but the standard library, so pip has nothing to fetch.

- build_wheel: a pure wheel (py3-none-any) holding nsajit/*.py. With the environment
  variable NSAJIT_WHEEL_LIBRARY=/path/to/libnsajit.so the library is bundled as
  nsajit/libnsajit.so (found there by nsajit._capi) and the wheel is tagged for this
  platform.
- build_editable: a wheel whose import hook maps `nsajit` to python/nsajit in the source
  tree (only that package: tests/ and this directory stay off sys.path).
- build_sdist: python/ as a tar.gz.
"""

import base64
import hashlib
import io
import os
import sysconfig
import tarfile
import zipfile
from pathlib import Path

NAME = "nsajit"
VERSION = "0.1.0"
ROOT = Path(__file__).resolve().parent.parent  # python/
PACKAGE = ROOT / NAME
DIST_INFO = f"{NAME}-{VERSION}.dist-info"

METADATA = f"""Metadata-Version: 2.1
Name: {NAME}
Version: {VERSION}
Summary: Python bindings (ctypes) and PyTorch autograd functions for nsajit, a JIT kernel generator for DeepSeek's Native Sparse Attention
License: see the nsajit repository
Requires-Python: >=3.9
Provides-Extra: torch
Requires-Dist: torch>=1.13; extra == "torch"
Description-Content-Type: text/markdown

"""


def _metadata_text():
    readme = ROOT / "README.md"
    return METADATA + (readme.read_text(encoding="utf-8") if readme.is_file() else "")


def _wheel_text(tag):
    return f"Wheel-Version: 1.0\nGenerator: nsajit_build {VERSION}\nRoot-Is-Purelib: {'true' if tag.endswith('any') else 'false'}\nTag: {tag}\n"


def _hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _Wheel:
    def __init__(self, directory, tag):
        self.tag = tag
        self.name = f"{NAME}-{VERSION}-{tag}.whl"
        self.path = os.path.join(directory, self.name)
        self.zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED)
        self.records = []

    def add(self, arcname, data, executable=False):
        if isinstance(data, str):
            data = data.encode("utf-8")
        info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = (0o755 if executable else 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        self.records.append(f"{arcname},{_hash(data)},{len(data)}")

    def close(self):
        self.add(f"{DIST_INFO}/METADATA", _metadata_text())
        self.add(f"{DIST_INFO}/WHEEL", _wheel_text(self.tag))
        self.add(f"{DIST_INFO}/top_level.txt", f"{NAME}\n")
        record = "\n".join(self.records + [f"{DIST_INFO}/RECORD,,"]) + "\n"
        self.zip.writestr(zipfile.ZipInfo(f"{DIST_INFO}/RECORD", date_time=(2020, 1, 1, 0, 0, 0)), record)
        self.zip.close()
        return self.name


def _sources():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


# ---- PEP 517 -----------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def _prepare_metadata(metadata_directory):
    d = Path(metadata_directory) / DIST_INFO
    d.mkdir(parents=True, exist_ok=True)
    (d / "METADATA").write_text(_metadata_text(), encoding="utf-8")
    (d / "WHEEL").write_text(_wheel_text("py3-none-any"), encoding="utf-8")
    return DIST_INFO


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _prepare_metadata(metadata_directory)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _prepare_metadata(metadata_directory)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    lib = os.environ.get("NSAJIT_WHEEL_LIBRARY")
    tag = "py3-none-any"
    if lib:
        plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        tag = f"py3-none-{plat}"
    wheel = _Wheel(wheel_directory, tag)
    for src in _sources():
        wheel.add(src.relative_to(ROOT).as_posix(), src.read_bytes())
    if lib:
        wheel.add(f"{NAME}/libnsajit.so", Path(lib).read_bytes(), executable=True)
    return wheel.close()


_FINDER = '''"""Editable install of nsajit: maps the package to its source tree."""
import importlib.util
import sys

PATH = {path!r}


class _Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "nsajit":
            return None
        return importlib.util.spec_from_file_location(
            name, PATH + "/__init__.py", submodule_search_locations=[PATH])


def install():
    if not any(f is _Finder for f in sys.meta_path):
        sys.meta_path.append(_Finder)
'''


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    wheel = _Wheel(wheel_directory, "py3-none-any")
    wheel.add("__editable___nsajit_finder.py", _FINDER.format(path=str(PACKAGE)))
    wheel.add("__editable__.nsajit-0.1.0.pth", "import __editable___nsajit_finder; __editable___nsajit_finder.install()\n")
    return wheel.close()


def build_sdist(sdist_directory, config_settings=None):
    base = f"{NAME}-{VERSION}"
    name = f"{base}.tar.gz"
    files = [ROOT / "pyproject.toml", ROOT / "README.md", Path(__file__)] + _sources()
    files += sorted(p for p in (ROOT / "tests").glob("*.py"))
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            if f.is_file():
                tar.add(str(f), arcname=f"{base}/{f.relative_to(ROOT).as_posix()}")
        pkg_info = _metadata_text().encode("utf-8")
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info)
        tar.addfile(info, io.BytesIO(pkg_info))
    return name
