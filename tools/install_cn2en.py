"""Install the ``cn2en`` translation model (MIT, weights in the wheel) despite its metadata.

Its only wheel (0.0.118) declares ``torch (>=1.9.1@https://...)``, which is not a valid
requirement (PEP 508), so pip refuses to install it at all. This script fetches that wheel
from PyPI by its published SHA-256, rewrites the one requirement to ``torch>=1.9.1``, and
installs it without dependencies into the running interpreter's environment. Idempotent:
nothing happens when ``cn2en`` is already importable.

    python tools/install_cn2en.py
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

NAME = "cn2en-0.0.118-py3-none-any.whl"
URL = ("https://files.pythonhosted.org/packages/0c/83/"
       "d945760fdf8126e6dc9788d1e2e4356909fc76a80f943ab9fad075496df4/" + NAME)
SHA256 = "f584f68806bf2deca1a451e67cf41351039831385a3c3602228378dc85eaa194"
BAD = "Requires-Dist: torch (>=1.9.1@https://download.pytorch.org/whl/cpu/torch_stable.html)"
GOOD = "Requires-Dist: torch (>=1.9.1)"


def main() -> int:
    if importlib.util.find_spec("cn2en") is not None:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        original = Path(tmp) / "original.whl"
        with urllib.request.urlopen(URL, timeout=120) as r:
            original.write_bytes(r.read())
        digest = hashlib.sha256(original.read_bytes()).hexdigest()
        if digest != SHA256:
            print(f"cn2en: the download's SHA-256 is {digest}, expected {SHA256}",
                  file=sys.stderr)
            return 1
        fixed = Path(tmp) / NAME
        with zipfile.ZipFile(original) as src, zipfile.ZipFile(fixed, "w",
                                                               zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                data = src.read(item)
                if item.filename.endswith(".dist-info/METADATA"):
                    data = data.decode().replace(BAD, GOOD).encode()
                elif item.filename.endswith(".dist-info/RECORD"):
                    # the rewritten METADATA no longer matches its recorded hash: drop it
                    data = b"".join(line + b"\n" for line in data.splitlines()
                                    if b"METADATA," not in line)
                dst.writestr(item, data)
        return subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                                str(fixed)])


if __name__ == "__main__":
    raise SystemExit(main())
