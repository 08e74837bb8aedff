"""Every Debian package the setup, the tests and the benchmarks install is listed, with
its tested version, in hack/debian-packages.txt, and only hack/debian.sh installs them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*ROOT.glob("hack/**/*.sh"), ROOT / "Makefile", *ROOT.glob("tests/**/*.py"),
           *ROOT.glob("bench/**/*.py"), *ROOT.glob("examples/**/*.py")]


def listed() -> dict[str, tuple[str, str]]:
    """package -> (group, tested version)."""
    rows = {}
    for line in (ROOT / "hack" / "debian-packages.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            group, package, version = line.split()
            rows[package] = (group, version)
    return rows


def test_every_package_has_a_group_and_an_exact_version() -> None:
    rows = listed()
    assert "redis-server" in rows and rows["redis-server"][0] == "setup"
    for package, (_, version) in rows.items():
        assert re.fullmatch(r"(\d+:)?\d[\w.+~:-]*", version), f"{package}: {version}"


def test_only_debian_sh_runs_apt_get_install() -> None:
    this = Path(__file__).resolve()
    for path in SOURCES:
        if path.name == "debian.sh" or path.resolve() == this:
            continue
        text = path.read_text()
        command = r"^\s*(\$?sudo\s+)?(env\s+\S+\s+)*apt(-|_)get\s+(-\S+\s+)*install\b"
        assert not re.search(command, text, re.M) and '"apt-get", "install"' not in text, \
            f"{path.relative_to(ROOT)} installs Debian packages; call hack/debian.sh instead"


def test_every_name_given_to_debian_sh_is_listed() -> None:
    rows = listed()
    names = set(rows) | {group for group, _ in rows.values()} | {"all"}
    asked = []
    this = Path(__file__).resolve()
    for path in SOURCES:
        if path.name == "debian.sh" or path.resolve() == this:
            continue
        text = "\n".join(line for line in path.read_text().splitlines()
                         if not line.lstrip().startswith("#"))
        if path.suffix == ".py":
            asked += re.findall(r'"debian\.sh"\), "([a-z0-9.+-]+)"', text)
            continue
        for args in re.findall(r'debian\.sh"?((?: +[a-z0-9][a-z0-9.+-]*)+)', text):
            asked += args.split()
    assert asked, "the scripts call hack/debian.sh"
    unknown = [name for name in asked if name not in names]
    assert not unknown, f"not in hack/debian-packages.txt: {unknown}"
