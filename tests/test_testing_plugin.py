"""snakepit's pytest plugin (``snakepit.testing``), used as its users use it.

``pytester`` writes a user's test files and runs pytest on them with the plugin
loaded; the runs are in-process (fast), which is also where a leaked child would
be ours: each leak test checks that the leftover is gone afterwards.
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

# Imported here so that in-process pytester runs (which drop the modules they
# import) share these modules with us instead of importing fresh copies.
import snakepit._app
import snakepit.exceptions
import snakepit.pool
import snakepit.supervisor
import snakepit.telemetry  # noqa: F401
from tests._pytester import backends, plugin_args

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's project folder, with this checkout importable."""
    pytester.syspathinsert(ROOT)
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest(*plugin_args(), "-p", "no:cacheprovider", *args)


def end_process(pid: int) -> None:
    """Kill and reap *pid* if a test left it running (our child or not)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --- Each fixture, in a user's test file ---

USER_ADAPTERS = """
from snakepit.adapter import Adapter, command


class Doubler(Adapter):
    @command
    def double(self, x: int) -> int:
        return 2 * x
"""

USER_TESTS = """
import anyio
import pytest

from snakepit.exceptions import RestartIntensityExceeded
from snakepit.supervisor import ChildSpec, Supervisor
from snakepit.adapter import Adapter
from user_adapters import Doubler

pytestmark = pytest.mark.anyio
STARTED = ("snakepit", "worker", "started")
RESTARTED = ("snakepit", "supervisor", "child_restarted")


async def test_pool_and_events(snakepit_no_leaks, snakepit_pool, snakepit_events):
    with anyio.fail_after(30):
        async with snakepit_pool("user_adapters:Doubler") as pool:
            (started,) = await snakepit_events.wait_for(STARTED)
            assert started.metadata["worker_id"] == pool.list_workers()[0]
            assert started.metadata["pool"] == pool.config.name
            assert await pool.execute("double", {"x": 21}) == 42
            assert pool.get_stats()["workers"] == 1  # size=1 by default


async def test_pool_of_a_class_with_options(snakepit_pool):
    with anyio.fail_after(30):
        async with snakepit_pool(Doubler, size=2, start_method="spawn") as pool:
            assert await pool.execute("double", {"x": 2}) == 4
            assert len(pool.list_workers()) == 2


def test_pool_refuses_a_class_workers_cannot_import(snakepit_pool):
    class Local(Adapter):
        pass

    with pytest.raises(TypeError, match="cannot be imported by name"):
        snakepit_pool(Local)


async def test_app(snakepit_app):
    config = {"pools": [{"name": "default", "pool_size": 1}]}
    with anyio.fail_after(30):
        async with snakepit_app(config) as sp:
            assert await sp.execute("add", {"a": 5, "b": 3}) == 8


async def test_fake_clock_drives_restart_intensity(snakepit_fake_clock, snakepit_events):
    crash = {}

    async def child(*, task_status=anyio.TASK_STATUS_IGNORED):
        crash["now"] = anyio.Event()
        task_status.started()
        await crash["now"].wait()
        raise RuntimeError("crash on command")

    class Tree(Supervisor):
        intensity = 2
        period = 60.0

        def init(self):
            return [ChildSpec(id="child", start=child)]

    outcome = []

    async def supervise(*, task_status=anyio.TASK_STATUS_IGNORED):
        try:
            await Tree(clock=snakepit_fake_clock).run(task_status=task_status)
        except RestartIntensityExceeded as exc:
            outcome.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(supervise)
            # an hour apart, ten crashes never exceed 2 restarts per minute
            for n in range(1, 11):
                assert snakepit_fake_clock.advance(3600) == 3600 * n
                crash["now"].set()
                await snakepit_events.wait_for(RESTARTED, count=n)
            assert not outcome
            # then two crashes a second apart: 2 restarts within 60 s, allowed
            snakepit_fake_clock.advance(1)
            crash["now"].set()
            await snakepit_events.wait_for(RESTARTED, count=11)
            # and a third within the minute is one too many: the tree gives up
            snakepit_fake_clock.advance(1)
            crash["now"].set()
    assert isinstance(outcome[0], RestartIntensityExceeded)
    assert len(snakepit_events.named(RESTARTED)) == 11
"""


def test_each_fixture_in_a_users_tests(project: pytest.Pytester) -> None:
    project.makepyfile(user_adapters=USER_ADAPTERS, test_user=USER_TESTS)
    result = run(project)
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=1 + 4 * backends())  # one sync test


def test_no_fixture_is_autouse(project: pytest.Pytester) -> None:
    """A plain test gets none of the plugin's fixtures (the plugin is loaded in
    every pytest run of everyone who installs snakepit)."""
    project.makepyfile(
        test_plain="""
        def test_plain(request):
            assert not [n for n in request.fixturenames if "snakepit" in n]
        """
    )
    result = run(project, "--fixtures")
    for name in ("snakepit_pool", "snakepit_app", "snakepit_events"):
        result.stdout.fnmatch_lines([f"{name}*"])
    result = run(project)
    result.assert_outcomes(passed=1)


# --- The leak check ---

LEAKY_TESTS = '''
import os
from pathlib import Path

import pytest


def leak(name):
    """Start a child process and let it run past the test."""
    pid = os.posix_spawnp("sleep", ["sleep", "60"], os.environ)
    Path(f"{name}.pid").write_text(str(pid))
'''


def test_the_fixture_fails_a_leaking_test_and_ends_the_leftover(
    project: pytest.Pytester,
) -> None:
    project.makeini("[pytest]\nsnakepit_leak_timeout = 0.2\n")
    project.makepyfile(
        test_leaky=LEAKY_TESTS
        + """

def test_checked(snakepit_no_leaks):
    leak("checked")


def test_unchecked():
    leak("unchecked")  # off by default: not noticed


def test_checked_and_clean(snakepit_no_leaks):
    pass
"""
    )
    try:
        result = run(project)
        checked = int((project.path / "checked.pid").read_text())
        unchecked = int((project.path / "unchecked.pid").read_text())
        result.assert_outcomes(passed=3, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*ERROR at teardown of test_checked*",
                f"*1 child process(es) behind (now killed): pid {checked} (sleep 60)*",
            ]
        )
        assert gone(checked)
        assert not gone(unchecked)
    finally:
        for pid_file in project.path.glob("*.pid"):
            end_process(int(pid_file.read_text()))


def test_the_ini_option_checks_every_test_but_not_broader_fixtures(
    project: pytest.Pytester,
) -> None:
    """With ``snakepit_leak_check = true`` every test is checked; a session
    fixture's process, started by the first test that uses it, is not a leak."""
    project.makeini(
        "[pytest]\nsnakepit_leak_check = true\nsnakepit_leak_timeout = 0.2\n"
    )
    project.makepyfile(
        test_leaky=LEAKY_TESTS
        + """

@pytest.fixture(scope="session")
def server():
    proc = os.posix_spawnp("sleep", ["sleep", "60"], os.environ)
    yield proc
    os.kill(proc, 9)
    os.waitpid(proc, 0)


def test_uses_the_session_fixture(server):
    assert server


def test_leaks():
    leak("leaks")


def test_clean(server):
    pass
"""
    )
    try:
        result = run(project)
        leaked = int((project.path / "leaks.pid").read_text())
        result.assert_outcomes(passed=3, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*ERROR at teardown of test_leaks*",
                f"*1 child process(es) behind (now killed): pid {leaked} (sleep 60)*",
            ]
        )
        output = result.stdout.str()
        assert "ERROR at teardown of test_uses_the_session_fixture" not in output
        assert "ERROR at teardown of test_clean" not in output
        assert gone(leaked)
    finally:
        for pid_file in project.path.glob("*.pid"):
            end_process(int(pid_file.read_text()))


def test_a_bad_leak_timeout_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nsnakepit_leak_timeout = soon\n")
    project.makepyfile(test_x="def test_x(snakepit_no_leaks):\n    pass\n")
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*snakepit_leak_timeout must be a number*"])


# --- docs/testing.md ---


def doc_files() -> dict[str, str]:
    """The files of docs/testing.md: each code block whose first line is a
    comment naming a file (``# test_my_adapters.py``)."""
    text = (ROOT / "docs" / "testing.md").read_text()
    files = {}
    for code in re.findall(r"```(?:python|toml)\n(.*?)```", text, re.DOTALL):
        first = code.splitlines()[0]
        match = re.fullmatch(r"# ([\w.]+\.(?:py|toml))", first)
        if match:
            files[match.group(1)] = code
    return files


def test_the_guides_example_passes(project: pytest.Pytester) -> None:
    files = doc_files()
    assert set(files) == {
        "my_adapters.py",
        "test_my_adapters.py",
        "test_my_tree.py",
        "pyproject.toml",
    }
    for name, code in files.items():
        (project.path / name).write_text(code)
    result = run(project)
    assert result.ret == 0, result.stdout.str()
    # every test (one of them sync), under the guide's leak check
    result.assert_outcomes(passed=1 + 5 * backends())


# --- Packaging ---


def test_the_plugin_is_an_entry_point() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    entry_points = config["options.entry_points"]["pytest11"]
    assert [line.strip() for line in entry_points.strip().splitlines()] == [
        "snakepit = snakepit.testing"
    ]


def test_loading_the_plugin_is_light_and_workers_never_load_it() -> None:
    code = (
        "import sys\n"
        "import snakepit.adapter, snakepit.worker\n"
        "assert 'pytest' not in sys.modules and 'snakepit.testing' not in "
        "sys.modules, 'a worker imported the plugin'\n"
        "before = set(sys.modules)\n"
        "import snakepit.testing\n"
        "heavy = {'snakepit.pool', 'snakepit._app', 'snakepit.telemetry', 'psutil', "
        "'anyio'} & (set(sys.modules) - before)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


# --- The fake clock ---


def test_fake_clock_moves_only_forward() -> None:
    # Imported here, last: pytester runs warn when a plugin is imported already.
    from snakepit.testing import FakeClock

    clock = FakeClock()
    assert clock() == clock.now == 0.0
    assert clock.advance(2.5) == 2.5
    assert clock.advance(0) == 2.5
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="only moves forward"):
            clock.advance(bad)
    assert clock() == 2.5
    assert repr(FakeClock(7)) == "FakeClock(now=7.0)"
