"""Commands other packages add to ``taskfleet`` (taskfleet.commands): the operator's comes
from its entry point, so the runtime never imports the operator; a missing one is named
with its pip install line."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from taskfleet import cli, commands
from testenv.processes import ROOT

RUNTIME = ROOT / "taskfleet"


def imported_modules(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def test_no_module_of_the_runtime_imports_the_operator() -> None:
    files = sorted(RUNTIME.rglob("*.py"))
    assert len(files) > 20
    upward = [f"{path.relative_to(ROOT)}: {name}" for path in files
              for name in imported_modules(path)
              if name == "taskfleet_operator" or name.startswith("taskfleet_operator.")]
    assert upward == []


def test_the_operator_command_is_an_installed_entry_point() -> None:
    # Missing after a checkout that added it: reinstall the project
    # (pip install --no-deps --no-build-isolation -e .) to refresh its entry points.
    found = {e.name: e.value for e in entry_points(group=commands.GROUP)}
    assert found.get("operator") == "taskfleet_operator.command:command"
    assert "operator" in commands.installed()


def test_a_missing_operator_is_named_with_its_pip_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(commands, "installed", dict)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["operator", "--namespace", "ns"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["taskfleet: 'taskfleet operator' needs the operator extra: "
                   "pip install 'taskfleet[operator]'"]


def test_the_operator_without_its_extras_installed_says_which_to_install() -> None:
    # The entry point is there (it ships with the distribution), kopf is not.
    code = "import sys; sys.modules['kopf'] = None\nfrom taskfleet.cli import main\n" \
           "raise SystemExit(main(['operator']))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'taskfleet[operator]'" in lines[0], done.stderr


def test_a_built_in_command_never_reads_the_entry_points(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A worker holds its stop signals within milliseconds of its start: scanning the
    # installed distributions first would cost tens of them.
    def refuse() -> dict[str, commands.Command]:
        raise AssertionError("entry points read for a built-in command")

    monkeypatch.setattr(commands, "installed", refuse)
    assert cli.main(["--log-level", "info", "health", "--file", str(tmp_path / "no")]) == 1


@pytest.mark.parametrize(("words", "command"), [
    (["--broker", "redis://h/0", "worker", "--app", "m:app"], "worker"),
    (["--broker", "operator", "--log-level", "debug", "send", "t"], "send"),
    (["--broker=redis://h/0", "operator"], "operator"),
    (["--help"], None),
    ([], None),
])
def test_the_command_word_skips_the_global_options(words: list[str], command: str | None
                                                   ) -> None:
    assert cli._command_word(words) == command


def test_the_built_in_commands_are_the_parsers_commands() -> None:
    [sub] = [a for a in cli.build_parser()._actions
             if isinstance(a, argparse._SubParsersAction)]
    assert sorted(sub.choices) == sorted(cli.BUILT_IN)


def test_the_operators_dashboard_without_aiohttp_names_the_extra_to_install() -> None:
    # The operator extra does not bring aiohttp; its dashboard needs it.
    code = """
import sys
sys.modules["aiohttp"] = None  # as if not installed
from taskfleet.cli import main
sys.exit(main(["operator", "--dashboard-port", "8082"]))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "pip install 'taskfleet[dashboard]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
