"""Packaging facts: one version, written once; the license pyproject declares exists."""

import importlib.metadata
import pathlib
import re

import pytest

import pyce

try:
    import tomllib
except ImportError:  # Python < 3.11: pytest itself depends on tomli there
    import tomli as tomllib

CHECKOUT = pathlib.Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((CHECKOUT / "pyproject.toml").read_text())


def _written_version():
    text = (CHECKOUT / "pyce" / "_version.py").read_text()
    (version,) = re.findall(r'^__version__ = "([^"]+)"$', text, flags=re.M)
    return version


def test_pyproject_reads_the_version_from_pyce_version_py():
    project = _pyproject()
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    provider = project["tool"]["scikit-build"]["metadata"]["version"]
    assert provider == {"provider": "scikit_build_core.metadata.regex", "input": "pyce/_version.py"}


def test_every_package_reports_the_one_version():
    pyce_gui = pytest.importorskip("pyce_gui")
    assert pyce.__version__ == _written_version()
    assert pyce_gui.__version__ is pyce.__version__


def test_no_other_file_writes_a_version():
    written = re.compile(r'^\s*(__version__|version)\s*=\s*["\']\d', flags=re.M)
    sources = [CHECKOUT / "pyproject.toml", *CHECKOUT.glob("pyce/**/*.py"), *CHECKOUT.glob("gui/**/*.py")]
    writers = [p.relative_to(CHECKOUT).as_posix() for p in sources if written.search(p.read_text())]
    assert writers == ["pyce/_version.py"]


def test_installed_metadata_carries_the_version():
    try:
        dist = importlib.metadata.distribution("pyce")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pyce is imported from a checkout, not from an installed distribution")
    installed_init = pathlib.Path(dist.locate_file("pyce/__init__.py")).resolve()
    if installed_init != pathlib.Path(pyce.__file__).resolve():
        pytest.skip("the pyce imported here is a checkout, not the installed distribution")
    assert dist.version == pyce.__version__


def test_the_declared_mit_license_is_shipped_in_the_checkout():
    assert _pyproject()["project"]["license"] == {"text": "MIT"}
    license_text = (CHECKOUT / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in license_text
