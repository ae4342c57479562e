"""The compatibility matrix: its data, check, list_all, reports, check_installed."""

from __future__ import annotations

import configparser
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from snakepit.exceptions import SnakepitError, UnknownCategory, UnknownProfile
from snakepit.interpreter import (
    CheckResult,
    CompatibilityReport,
    LibraryInfo,
    Status,
    ThreadSafety,
    check,
    check_installed,
    clear_cache,
    generate_report,
    get_library_info,
    list_all,
)
from snakepit.interpreter._compat import _libraries
from snakepit.profiles import Profile
from tests.interpreter import probe_answer, shell_interpreter

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "snakepit" / "interpreter" / "compatibility.json"
#: The libraries the issue asks the matrix to cover, at least.
REQUIRED = (
    "numpy",
    "scipy",
    "torch",
    "tensorflow",
    "pandas",
    "polars",
    "matplotlib",
    "plotly",
    "sqlite3",
    "psycopg2",
    "requests",
    "httpx",
    "scikit-learn",
    "xgboost",
    "lightgbm",
    "transformers",
    "spacy",
    "msgpack",
)
CATEGORIES = ("thread_safe", "conditional", "not_thread_safe")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


# --- The data file ---


def raw_entries() -> list[dict[str, object]]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    assert data["format"] == 1
    entries: list[dict[str, object]] = data["libraries"]
    return entries


def test_the_matrix_covers_the_required_libraries() -> None:
    names = [entry["name"] for entry in raw_entries()]
    assert len(names) == len(set(names))
    assert set(REQUIRED) <= set(names)


@pytest.mark.parametrize("entry", raw_entries(), ids=lambda e: str(e["name"]))
def test_every_entry_is_complete(entry: dict[str, object]) -> None:
    assert set(entry) == {
        "name",
        "import_name",
        "aliases",
        "thread_safety",
        "gil",
        "min_version",
        "notes",
        "workaround",
    }
    assert entry["thread_safety"] in CATEGORIES
    assert str(entry["import_name"]).isidentifier()
    assert isinstance(entry["aliases"], list)
    version = entry["min_version"]
    assert version is None or re.fullmatch(r"\d+(\.\d+)+", str(version))
    for field in ("name", "gil", "notes", "workaround"):
        text = entry[field]
        assert isinstance(text, str) and text.strip() == text and text
        # rendered into a markdown table: one line, no cell separator
        assert "|" not in text and "\n" not in text
    for field in ("notes", "workaround", "gil"):
        assert str(entry[field]).endswith("."), field


def test_no_two_entries_share_a_name() -> None:
    seen: dict[str, str] = {}
    for entry in _libraries():
        for name in {entry.name, entry.import_name, *entry.aliases}:
            key = name.lower().replace("_", "-")
            assert seen.setdefault(key, entry.name) == entry.name, name


def test_the_data_file_ships_with_the_package() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "snakepit.interpreter" in config["options"]["packages"].split()
    shipped = config["options.package_data"]["snakepit"].replace(",", " ").split()
    assert "interpreter/compatibility.json" in shipped


def test_entries_load_as_values() -> None:
    info = get_library_info("pandas")
    assert isinstance(info, LibraryInfo)
    assert info.name == "pandas"
    assert info.thread_safety is ThreadSafety.NOT_THREAD_SAFE
    assert info.thread_safe is False
    assert info.min_version == "2.0.0"
    assert "copy()" in info.notes
    assert hash(info) == hash(get_library_info("PANDAS"))
    numpy = get_library_info("numpy")
    assert numpy is not None
    assert numpy.thread_safe is True
    assert "BLAS/LAPACK" in numpy.gil
    sqlite3 = get_library_info("sqlite3")
    assert sqlite3 is not None
    assert sqlite3.min_version is None  # the standard library
    assert "check_same_thread" in sqlite3.notes


# --- Names ---


@pytest.mark.parametrize(
    "name",
    ["scikit-learn", "sklearn", "Scikit-Learn", "SKLEARN", "scikit_learn", " sklearn "],
)
def test_names_are_case_insensitive_and_take_import_names(name: str) -> None:
    info = get_library_info(name)
    assert info is not None
    assert info.name == "scikit-learn"
    assert info.import_name == "sklearn"
    assert check(name, "thread").library == "scikit-learn"


def test_aliases_find_their_entry() -> None:
    assert get_library_info("pytorch") is get_library_info("torch")
    assert get_library_info("psycopg2-binary") is get_library_info("psycopg2")


def test_an_unknown_library_has_no_info() -> None:
    assert get_library_info("leftpad") is None


# --- check ---


def test_numpy_is_ok_in_the_thread_profile() -> None:
    result = check("numpy", "thread")
    assert isinstance(result, CheckResult)
    assert result.status is Status.OK
    assert result.status.value == "ok"
    assert result.ok
    assert result.profile is Profile.THREAD
    assert "thread-safe" in result.message


def test_pandas_is_a_warning_in_the_thread_profile() -> None:
    result = check("pandas", Profile.THREAD)
    assert result.status is Status.WARNING
    assert not result.ok
    assert "not thread-safe" in result.message
    assert "Workaround:" in result.message
    assert "process profile" in result.message


def test_a_conditional_library_is_a_warning_with_its_workaround() -> None:
    result = check("sqlite3", "thread")
    assert result.status is Status.WARNING
    assert "conditionally thread-safe" in result.message
    assert "one connection per thread" in result.message


def test_an_unknown_library_is_unknown_in_the_thread_profile() -> None:
    result = check("leftpad", "thread")
    assert result.status is Status.UNKNOWN
    assert result.library == "leftpad"
    assert "not in the compatibility matrix" in result.message


@pytest.mark.parametrize("library", [*REQUIRED, "leftpad"])
def test_everything_is_ok_in_the_process_profile(library: str) -> None:
    result = check(library, "process")
    assert result.status is Status.OK
    assert "one call at a time" in result.message


def test_every_verdict_follows_the_category() -> None:
    for entry in _libraries():
        status = check(entry.import_name, "thread").status
        expected = Status.OK if entry.thread_safe else Status.WARNING
        assert status is expected, entry.name


def test_an_unknown_profile_is_a_typed_error() -> None:
    with pytest.raises(UnknownProfile, match="'fiber'"):
        check("numpy", "fiber")
    with pytest.raises(UnknownProfile):
        generate_report(["numpy"], "fiber")
    assert issubclass(UnknownProfile, SnakepitError)
    assert issubclass(UnknownProfile, ValueError)


# --- list_all ---


def test_list_all_maps_every_category_to_sorted_names() -> None:
    everything = list_all()
    assert list(everything) == list(CATEGORIES)
    names: list[str] = []
    for category, listed in everything.items():
        assert listed == sorted(listed), category
        assert listed == list_all(category) == list_all(ThreadSafety(category))
        names += listed
    assert sorted(names) == sorted(entry.name for entry in _libraries())
    assert {"numpy", "scipy", "polars", "httpx", "msgpack"} <= set(
        list_all("thread_safe")
    )
    assert {"pandas", "matplotlib", "spacy"} <= set(list_all("not_thread_safe"))
    assert "scikit-learn" in list_all("conditional")


def test_list_all_of_an_unknown_category_is_a_typed_error() -> None:
    with pytest.raises(UnknownCategory, match="'thread_unsafe'") as caught:
        list_all("thread_unsafe")
    assert "not_thread_safe" in str(caught.value)  # the message lists the choices
    assert isinstance(caught.value, SnakepitError)
    assert isinstance(caught.value, ValueError)


# --- Reports ---


def test_generate_report_shape() -> None:
    report = generate_report(
        ["numpy", "pandas", "leftpad", "sklearn", "scikit-learn", "NumPy"], "thread"
    )
    assert set(report) == {"compatible", "warnings", "unknown"}
    assert report["compatible"] == ["numpy"]
    assert [w["library"] for w in report["warnings"]] == ["pandas", "scikit-learn"]
    for warning in report["warnings"]:
        assert set(warning) == {"library", "message"}
        assert warning["message"] == check(warning["library"], "thread").message
    assert report["unknown"] == ["leftpad"]
    json.dumps(report)  # plain data


def test_generate_report_in_the_process_profile_is_all_compatible() -> None:
    report = generate_report(["numpy", "pandas", "leftpad"], "process")
    expected: CompatibilityReport = {
        "compatible": ["numpy", "pandas", "leftpad"],
        "warnings": [],
        "unknown": [],
    }
    assert report == expected


def test_generate_report_of_nothing() -> None:
    assert generate_report([], "thread") == {
        "compatible": [],
        "warnings": [],
        "unknown": [],
    }


# --- check_installed ---


def test_check_installed_on_the_running_interpreter_finds_msgpack() -> None:
    report = check_installed()
    assert set(report) == {"compatible", "warnings", "unknown"}
    assert "msgpack" in report["compatible"]
    assert report["unknown"] == []  # only the matrix's libraries are probed
    process = check_installed(profile="process")
    assert "msgpack" in process["compatible"]
    assert process["warnings"] == []


def test_check_installed_reports_what_the_interpreter_has(tmp_path: Path) -> None:
    modules = {
        "numpy": "2.1.0",
        "sklearn": "1.5.2",
        "pandas": "2.2.3",
        "msgpack": "1.1.0",
        "snakepit": None,
    }
    python, _ = shell_interpreter(tmp_path, probe_answer(modules=modules))
    report = check_installed(python, "thread")
    assert report["compatible"] == ["numpy", "msgpack"]
    assert [w["library"] for w in report["warnings"]] == ["pandas", "scikit-learn"]
    assert check_installed(python, "process")["compatible"] == [
        "numpy",
        "pandas",
        "scikit-learn",
        "msgpack",
    ]


def test_check_installed_warns_about_releases_older_than_the_entry(
    tmp_path: Path,
) -> None:
    modules = {"numpy": "1.21.6", "pandas": "1.5.3", "msgpack": "1.0.8rc1"}
    python, _ = shell_interpreter(tmp_path, probe_answer(modules=modules))
    report = check_installed(python)
    assert report["compatible"] == ["msgpack"]  # 1.0.8rc1 is not older than 1.0.0
    messages = {w["library"]: w["message"] for w in report["warnings"]}
    assert messages["numpy"].startswith("numpy 1.21.6 is older than 1.26.0")
    assert messages["pandas"].startswith("pandas 1.5.3 is older than 2.0.0")
    assert "not thread-safe" in messages["pandas"]
    assert check_installed(python, "process")["warnings"] == []
