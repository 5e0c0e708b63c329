"""A PEP 517 build backend for the dspool SDK, in the standard library alone.

pip builds the SDK with it in an isolated environment that needs nothing from
an index (pyproject.toml requires nothing), so `pip install ./python`, and
`pip install URL` of the archive the control plane serves, work on a machine
with no network. It makes a pure-Python wheel of the package `dspool`, the
same bytes for the same tree (entries sorted, timestamps fixed), and an
editable install (a .pth file) for `pip install -e`.
"""

import base64
import hashlib
import os
import re
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "dspool"
TAG = "py3-none-any"
# Zip timestamps of every entry: the wheel's bytes depend on the tree alone.
EPOCH = (1980, 1, 1, 0, 0, 0)


def _project():
    """The [project] table's plain string values, and the version."""
    fields = {}
    section = None
    with open(os.path.join(HERE, "pyproject.toml"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            m = re.fullmatch(r"\[(.+)\]", line)
            if m:
                section = m.group(1).strip()
                continue
            m = re.fullmatch(r'([A-Za-z-]+)\s*=\s*"([^"]*)"', line)
            if section == "project" and m:
                fields[m.group(1)] = m.group(2)
    with open(os.path.join(HERE, PACKAGE, "_version.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M)
    if not m:
        raise RuntimeError("no __version__ in dspool/_version.py")
    fields["version"] = m.group(1)
    return fields


def _metadata(p):
    readme = ""
    if p.get("readme"):
        with open(os.path.join(HERE, p["readme"]), encoding="utf-8") as f:
            readme = f.read()
    lines = [
        "Metadata-Version: 2.1",
        "Name: " + p["name"],
        "Version: " + p["version"],
        "Summary: " + p.get("description", ""),
        "Requires-Python: " + p.get("requires-python", ">=3"),
        "Description-Content-Type: text/markdown",
    ]
    return ("\n".join(lines) + "\n\n" + readme).encode("utf-8")


def _dist_info(p):
    return "%s-%s.dist-info" % (p["name"], p["version"])


def _wheel_name(p):
    return "%s-%s-%s.whl" % (p["name"], p["version"], TAG)


def _package_files():
    out = []
    root = os.path.join(HERE, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py") or name == "py.typed":
                full = os.path.join(dirpath, name)
                out.append((os.path.relpath(full, HERE).replace(os.sep, "/"), full))
    return out


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _write_wheel(path, entries, p):
    """Writes entries (name, bytes) and the dist-info files into a wheel."""
    info = _dist_info(p)
    wheel = "Wheel-Version: 1.0\nGenerator: dspool_build\nRoot-Is-Purelib: true\nTag: %s\n" % TAG
    entries = list(entries) + [
        (info + "/METADATA", _metadata(p)),
        (info + "/WHEEL", wheel.encode()),
    ]
    record = "".join(_record_line(n, d) + "\n" for n, d in entries) + info + "/RECORD,,\n"
    entries.append((info + "/RECORD", record.encode()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            zi = zipfile.ZipInfo(name, EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    p = _project()
    info = os.path.join(metadata_directory, _dist_info(p))
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "wb") as f:
        f.write(_metadata(p))
    return _dist_info(p)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    entries = []
    for name, full in _package_files():
        with open(full, "rb") as f:
            entries.append((name, f.read()))
    _write_wheel(os.path.join(wheel_directory, _wheel_name(p)), entries, p)
    return _wheel_name(p)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    pth = (HERE + "\n").encode()
    _write_wheel(os.path.join(wheel_directory, _wheel_name(p)), [("dspool_editable.pth", pth)], p)
    return _wheel_name(p)
