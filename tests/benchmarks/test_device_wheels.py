"""Repacking the Ray wheel for the GPU check machine: unused files out, the rest (and its modes) intact."""

from __future__ import annotations

import sys
import zipfile

from benchmarks.device_wheels import prune, repack


def test_repack_drops_the_java_jar_and_source_maps_and_their_record_lines(tmp_path):
    wheel = tmp_path / "ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl"
    files = {"ray/__init__.py": b"x", "ray/jars/ray_dist.jar": b"j" * 1000, "ray/core/src/ray/raylet/raylet": b"elf",
             "ray/dashboard/client/build/static/js/main.js": b"js", "ray/dashboard/client/build/static/js/main.js.map": b"m"}
    record = "".join(f"{name},sha256=x,1\n" for name in files) + "ray-2.60.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name.endswith("raylet") else 0o644) << 16
            z.writestr(info, data)
        z.writestr("ray-2.60.0.dist-info/RECORD", record)
    assert repack(wheel) > 0
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "ray/jars/ray_dist.jar" not in names and not any(n.endswith(".map") for n in names)
        assert {"ray/__init__.py", "ray/core/src/ray/raylet/raylet", "ray/dashboard/client/build/static/js/main.js"} < set(names)
        assert z.getinfo("ray/core/src/ray/raylet/raylet").external_attr >> 16 == 0o755  # still executable
        kept = z.read("ray-2.60.0.dist-info/RECORD").decode()
        assert "ray_dist.jar" not in kept and ".map," not in kept and "ray/__init__.py" in kept


def test_prune_removes_what_this_python_already_has(tmp_path):
    for name, top in (("pytest", "_pytest_copy"), ("no_such_dist_xyz", "no_such_dist_xyz")):
        info = tmp_path / f"{name}-1.0.dist-info"
        info.mkdir()
        (tmp_path / top).mkdir()
        (tmp_path / top / "__init__.py").write_text("")
        (info / "RECORD").write_text(f"{top}/__init__.py,,\n{info.name}/RECORD,,\n")
    assert prune(tmp_path) == ["pytest"] and "pytest" in sys.modules
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_such_dist_xyz", "no_such_dist_xyz-1.0.dist-info"]
