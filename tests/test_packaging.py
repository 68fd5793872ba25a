"""The wheel holds every module of optc/, passes/ and runtime/ under optc.*, and nothing
installs as a top-level `passes` or `runtime` package."""

import os
import subprocess
import sys
import zipfile

from tests.util import REPO


def test_wheel_contains_every_module(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("optc-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder, package in (("optc", "optc"), ("passes", "optc/passes"),
                            ("runtime", "optc/runtime")):
        for f in (REPO / folder).rglob("*.py"):
            rel = f.relative_to(REPO / folder)
            if "__pycache__" in rel.parts or (folder == "optc" and rel.parts[0] in
                                               ("passes", "runtime")):
                continue
            expected.add(f"{package}/{rel.as_posix()}")
    missing = expected - names
    assert not missing, f"modules missing from the wheel: {sorted(missing)}"
    top_level = {n.split("/")[0] for n in names}
    assert top_level <= {"optc", next(n.split("/")[0] for n in names if ".dist-info/" in n)}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "optc = optc.cli:main" in text


def test_wheel_installs_and_runs_without_the_source_tree(tmp_path):
    """The wheel (not the editable install) imports and runs from outside the repository."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel = next((tmp_path / "dist").glob("optc-*.whl"))
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                        str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import optc, optc.passes, optc.runtime, optc.passes.cleanup; "
            "print(optc.__file__); print(optc.passes.__file__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert all(line.startswith(str(site)) for line in r.stdout.split()), r.stdout
    r = subprocess.run([sys.executable, "-m", "optc", "passes"], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert r.returncode == 0 and "fold-constants" in r.stdout, r.stderr
