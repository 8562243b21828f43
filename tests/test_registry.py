"""One Registry for methods, backbones and importers: lazy lookups, did-you-mean, entry points."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from piaa.errors import ConfigError
from piaa.plugins import Registry


def _imported_after(code: str) -> set[str]:
    """The piaa modules a fresh interpreter has imported after running `code`."""
    probe = code + "\nimport json, sys; print(json.dumps(sorted(m for m in sys.modules if m.startswith('piaa'))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_a_method_lookup_imports_only_that_methods_module():
    loaded = _imported_after("from piaa.registry import method_class; assert method_class('ridge').name == 'ridge'")
    assert "piaa.baselines.ridge" in loaded
    assert not {"piaa.meta.methods", "piaa.personality.method", "piaa.baselines.knn", "piaa.baselines.pam"} & loaded


def test_an_importer_lookup_imports_only_that_importers_module():
    loaded = _imported_after("from piaa.tasks.importers.registry import IMPORTERS; IMPORTERS.get('ava')")
    assert "piaa.tasks.importers.ava" in loaded
    assert not {"piaa.tasks.importers.flickr_aes", "piaa.tasks.importers.aadb", "piaa.tasks.importers.psychoflickr"} & loaded


def test_the_cli_starts_without_importing_any_method_backbone_or_importer():
    loaded = _imported_after("import piaa.console.cli")
    assert not {m for m in loaded if m.startswith(("piaa.baselines.", "piaa.meta", "piaa.features.", "piaa.tasks.importers."))}


def test_lazy_entries_decorators_families_and_typos(tmp_path, monkeypatch):
    (tmp_path / "reg_demo_mod.py").write_text("ONE = 'one'\nVARIANTS = {'v1': 1, 'v2': 2}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    reg = Registry("widget", on_load=lambda name, obj: seen.append(name))
    reg.add("one", "reg_demo_mod:ONE")
    reg.add_family("reg_demo_mod:VARIANTS")
    assert "reg_demo_mod" not in sys.modules  # nothing imported until looked up
    assert reg.get("one") == "one" and reg.get("v2") == 2 and seen == ["one", "v1", "v2"]

    @reg.register("two")
    def two():
        return 2

    assert reg.get("two") is two and reg.names() == ["one", "two", "v1", "v2"]
    assert reg.name_of(two) == "two"
    with pytest.raises(ConfigError, match="unknown widget 'tow'; did you mean 'two'"):
        reg.get("tow")
    with pytest.raises(ConfigError, match="widget name 'one' is already taken by reg_demo_mod:ONE"):
        reg.add("one", "elsewhere:ONE")
    with pytest.raises(ConfigError, match="widget name 'two' is already taken"):
        reg.register("two")(lambda: 3)


def test_another_package_adds_a_method_through_an_entry_point(tmp_path, monkeypatch):
    """An installed distribution's `piaa.methods` entry point is found on the first unknown name."""
    (tmp_path / "piaa_plugin_demo.py").write_text(textwrap.dedent("""
        from piaa.baselines.giaa import GenericPrior

        class Mine(GenericPrior):
            summary = "a plugin's method"
    """))
    dist = tmp_path / "piaa_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: piaa-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[piaa.methods]\nplugin-mine = piaa_plugin_demo:Mine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    methods = Registry("method", group="piaa.methods", on_load=lambda name, cls: setattr(cls, "name", name))
    methods.add("giaa", "piaa.baselines.giaa:GenericPrior")
    cls = methods.get("plugin-mine")
    assert cls.__module__ == "piaa_plugin_demo" and cls.name == "plugin-mine" and cls.summary == "a plugin's method"
    assert methods.names() == ["giaa", "plugin-mine"]


def test_import_commands_come_from_the_importer_registry(cli):
    from piaa.tasks.importers.registry import IMPORTERS

    r = cli("data", "import", "--help")
    listed = [line.split("│")[1].split()[0] for line in r.out.splitlines() if line.startswith("│ ") and line.split("│")[1].strip() and not line.split("│")[1].strip().startswith("-")]
    assert r.code == 0 and listed == IMPORTERS.names()
    r = cli("data", "import", "avx")
    known = ", ".join(IMPORTERS.names())
    assert r.code == 2 and r.err.strip() == f"error: unknown importer 'avx'; did you mean 'ava'? (known: {known})"


def test_an_importer_is_one_module_with_its_options(cli, tmp_path):
    """The generated command passes each declared option under its keyword (AVA's --ava-txt → path)."""
    (tmp_path / "AVA.txt").write_text("1 100 0 0 1 2 3 2 1 0 0 0 1 2 7\n2 101 0 1 1 1 1 1 1 1 1 1 0 0 7\n")
    r = cli("data", "import", "ava", "--ava-txt", tmp_path / "AVA.txt", "--dry-run")
    assert r.code == 0 and "AVA: checked (dry run: nothing written)" in r.out and "2 images, 18 votes" in r.err  # 9 + 9 vote counts
    r = cli("data", "import", "ava", "--ava-txt", tmp_path / "AVA.txt")
    assert r.code == 2 and r.err.strip() == "error: give --features STORE and --out DIR (or --dry-run to check the files only)"
