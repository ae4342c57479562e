"""What we ship matches the tree: setup.cfg's package list, and a built wheel."""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Output of a failed build that means "could not reach the package index".
NETWORK_ERRORS = (
    "Could not find a version that satisfies the requirement",
    "No matching distribution found",
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Max retries exceeded",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
)


def read_options(root: Path) -> tuple[list[str], dict[str, str]]:
    """Return setup.cfg's ``packages`` list and ``package_dir`` mapping."""
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    packages = config["options"]["packages"].split()
    package_dir: dict[str, str] = {}
    for line in config["options"].get("package_dir", "").splitlines():
        if line.strip():
            name, _, directory = line.partition("=")
            package_dir[name.strip()] = directory.strip()
    return packages, package_dir


def packages_in_tree(root: Path, package_dir: dict[str, str]) -> dict[str, Path]:
    """Every package the tree holds, with its directory: each directory with an
    ``__init__.py`` under ``snakepit/``, except where ``package_dir`` maps a package
    elsewhere (that package's subtree then comes from the mapped directory)."""
    found: dict[str, Path] = {}
    sources = {"snakepit": root / "snakepit"}
    sources.update({name: root / d for name, d in package_dir.items()})
    for name, source in sources.items():
        for init in source.rglob("__init__.py"):
            relative = init.parent.relative_to(source)
            if "__pycache__" in relative.parts:
                continue
            package = ".".join((name, *relative.parts))
            # a directory that package_dir takes from elsewhere (the shim in
            # snakepit/adapters/) does not count where it sits
            if name == "snakepit" and any(
                package == other or package.startswith(other + ".")
                for other in package_dir
            ):
                continue
            found[package] = init.parent
    return found


def test_setup_cfg_lists_every_package_in_the_tree() -> None:
    listed, package_dir = read_options(ROOT)
    assert len(listed) == len(set(listed)), "setup.cfg lists a package twice"
    in_tree = packages_in_tree(ROOT, package_dir)
    assert set(listed) - set(in_tree) == set(), (
        "setup.cfg lists packages without an __init__.py (the wheel would lack them)"
    )
    assert set(in_tree) - set(listed) == set(), (
        "packages missing from setup.cfg's [options] packages (they would not ship)"
    )


def test_adapters_map_to_the_top_level_directory() -> None:
    _, package_dir = read_options(ROOT)
    assert package_dir == {"snakepit.adapters": "adapters"}
    assert (ROOT / "adapters" / "__init__.py").is_file()


# --- Building a wheel ---


def can_build_offline() -> bool:
    """Whether setuptools here can build a wheel without fetching anything."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    return (
        importlib.util.find_spec("wheel") is not None
        or importlib.util.find_spec("setuptools.command.bdist_wheel") is not None
    )


def copy_tree(destination: Path) -> Path:
    """Copy the checkout so the build's ``build/`` and ``*.egg-info`` stay out of it
    (others may be working in the same tree)."""
    source = destination / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "__pycache__",
            "*.pyc",
            ".*_cache",
            ".hypothesis",
            "build",
            "dist",
            "*.egg-info",
        ),
    )
    return source


def build_wheel(source: Path, out: Path) -> Path:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out)]
    if can_build_offline():
        command.append("--no-build-isolation")
    else:
        # setuptools here cannot make wheels (no `wheel` package, setuptools too
        # old for its own bdist_wheel): pip fetches the build requirements.
        command += ["--retries", "1", "--timeout", "20"]
    command.append(str(source))
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=source, timeout=600
    )
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if "--no-build-isolation" not in command and any(
            marker in output for marker in NETWORK_ERRORS
        ):
            pytest.skip(
                "building a wheel needs the build requirements from the package "
                "index, which cannot be reached:\n" + output[-2000:]
            )
        pytest.fail(f"building the wheel failed:\n{output[-4000:]}")
    [wheel] = out.glob("snakepit-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_contents(tmp_path: Path) -> None:
    source = copy_tree(tmp_path)
    wheel = build_wheel(source, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        adapters_init = archive.read("snakepit/adapters/__init__.py")
    assert len(names) == len(set(names)), "the wheel holds a file twice"
    files = set(names)
    assert "snakepit/py.typed" in files
    # snakepit.adapters comes from the top-level adapters/, not from the
    # source-checkout shim in snakepit/adapters/
    assert adapters_init == (source / "adapters" / "__init__.py").read_bytes()
    shipped_adapters = {n for n in files if n.startswith("snakepit/adapters/")}
    expected_adapters = {
        "snakepit/adapters/" + p.relative_to(source / "adapters").as_posix()
        for p in (source / "adapters").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert shipped_adapters == expected_adapters
    # nothing but the package and its metadata
    tops = {n.split("/", 1)[0] for n in files}
    assert tops == {"snakepit", wheel.name.split("-")[0] + "-" + dist_version(wheel)}
    assert not any(n.startswith(("tests/", "benchmarks/", "adapters/")) for n in files)
    # every module of the source tree ships (the shim excepted)
    _, package_dir = read_options(source)
    for package, directory in packages_in_tree(source, package_dir).items():
        for module in directory.glob("*.py"):
            target = package.replace(".", "/") + "/" + module.name
            assert target in files, f"{target} is missing from the wheel"


def dist_version(wheel: Path) -> str:
    """``snakepit-0.1.0-py3-none-any.whl`` -> ``0.1.0.dist-info``."""
    return wheel.name.split("-")[1] + ".dist-info"


#: Installed here for tests or extras, not by ``pip install snakepit``.
NOT_INSTALLED_BY_DEFAULT = (
    "sniffio",
    "trio",
    "rich",
    "prometheus_client",
    "opentelemetry",
    "uvloop",
    "pytest",
    "hypothesis",
    "numpy",
)

BLOCKED_RUN = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"no module named {{name!r}} (blocked)")
        return None

sys.meta_path.insert(0, Block())
import anyio, snakepit
from snakepit.pool import open_pool

async def main():
    for method in ("spawn", "template"):
        async with open_pool(size=1, start_method=method) as pool:
            assert await pool.execute("add", {{"a": 1, "b": 2}}) == 3
    with snakepit.start({{"pools": [{{"name": "default", "pool_size": 1}}]}}) as sp:
        assert sp.execute("add", {{"a": 2, "b": 2}}) == 4

anyio.run(main)
import snakepit.cli
print("ok")
"""


def test_a_default_install_needs_nothing_beyond_its_requirements() -> None:
    # The extras' and the test suite's packages are blocked: the core must run
    # without them (a fresh `pip install snakepit` has none of them).
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKED_RUN.format(blocked=NOT_INSTALLED_BY_DEFAULT),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
