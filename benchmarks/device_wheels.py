"""Wheels for the GPU check machine (Python 3.12, manylinux x86_64, no network), fetched here.

    python benchmarks/device_wheels.py benchmarks/.device_wheels     # here: fetch and repack
    python benchmarks/device_wheels.py --prune DEPS                  # there: after pip install --target DEPS

Downloads Ray, Hydra and OmegaConf with their dependencies for that platform (``pip download``; antlr4's
runtime 4.9.3, which Hydra pins, ships only as a source archive: it is pure Python and built into a wheel
here first), then
repacks the Ray wheel without ``ray/jars/`` (the Java worker jar, 30.7 MiB, unused) and the dashboard's
JavaScript source maps (1.5 MiB): 79 MB -> about 43 MiB, so the wheels and the repository fit the 64 MiB
that can travel to the machine. Prints one JSON object: the wheels and their total size.

On the machine, ``pip install --no-index --no-deps --target DEPS`` puts every wheel into a private folder;
``--prune`` then removes from it each distribution the machine's Python already has (e.g. its own
``packaging`` or ``protobuf``), so only what is missing (Ray, Hydra, ...) shadows nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

REQUIREMENTS = ["ray==2.60.0", "hydra-core==1.3.2", "omegaconf==2.3.0"]
ANTLR = "antlr4-python3-runtime==4.9.3"
PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
            "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux_2_28_x86_64", "--only-binary=:all:"]


def unused(name: str) -> bool:
    return name.startswith("ray/jars/") or (name.startswith("ray/dashboard/") and name.endswith(".map"))


def repack(wheel: Path) -> int:
    """Rewrite ``wheel`` without the unused files (and their RECORD lines); returns the bytes saved."""
    before = wheel.stat().st_size
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if unused(info.filename):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if not unused(line.split(",", 1)[0])).encode()
            dst.writestr(info, data)  # keeps each entry's permission bits (Ray's binaries stay executable)
    tmp.replace(wheel)
    return before - wheel.stat().st_size


def prune(deps: Path) -> list[str]:
    """Delete from ``deps`` the distributions this interpreter (without ``deps`` on its path) already has."""
    from importlib.metadata import PackageNotFoundError, distribution

    removed = []
    for info in sorted(deps.glob("*.dist-info/RECORD")):
        info = info.parent
        name = info.name.split("-")[0]
        try:
            distribution(name)
        except PackageNotFoundError:
            continue
        for line in (info / "RECORD").read_text().splitlines():
            path = deps / line.split(",", 1)[0]
            if path.is_file():
                path.unlink()
        removed.append(name)
    for folder in sorted((p for p in deps.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed


def main() -> None:
    if sys.argv[1:2] == ["--prune"]:
        print(json.dumps({"already_installed": prune(Path(sys.argv[2]))}), file=sys.stderr)
        return
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/.device_wheels")
    out.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--wheel-dir", str(out), ANTLR], check=True)
    subprocess.run([*pip, "download", "--dest", str(out), "--find-links", str(out), *PLATFORM, *REQUIREMENTS],
                   check=True)
    saved = sum(repack(w) for w in out.glob("ray-*.whl") if any(unused(n) for n in zipfile.ZipFile(w).namelist()))
    wheels = sorted(out.glob("*.whl"))
    print(json.dumps({"folder": str(out), "wheels": [w.name for w in wheels], "repack_saved_mib": round(saved / 2**20, 1),
                      "total_mib": round(sum(w.stat().st_size for w in wheels) / 2**20, 1)}))


if __name__ == "__main__":
    main()
