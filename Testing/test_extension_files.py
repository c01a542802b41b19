"""The Slicer extension's build, catalog and module files agree with each other and with the code."""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ET

from conftest import REPO
from SirenCompressLib.slicer_nodes import PANEL_PARAMETERS

MODULE = REPO / "SirenCompress"


def cmake_set(text: str, name: str) -> str:
    match = re.search(rf'set\({name}\s+"([^"]*)"\)', text)
    assert match, name
    return match.group(1)


def cmake_list(text: str, name: str) -> list[str]:
    match = re.search(rf"set\({name}\s+(.*?)\)", text, re.S)
    return match.group(1).split()


def s4ext() -> dict[str, str]:
    fields = {}
    for line in (REPO / "SirenCompress.s4ext").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
    return fields


def module_tree() -> ast.Module:
    return ast.parse((MODULE / "SirenCompress.py").read_text())


def parameter_node_fields() -> set[str]:
    cls = next(n for n in module_tree().body if isinstance(n, ast.ClassDef) and n.name == "SirenCompressParameterNode")
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_name_category_and_dependencies_agree():
    top = (REPO / "CMakeLists.txt").read_text()
    catalog = json.loads((REPO / "SirenCompress.json").read_text())
    legacy = s4ext()
    assert re.search(r"^project\(SirenCompress\)", top, re.M)
    assert cmake_set(top, "EXTENSION_CATEGORY") == catalog["category"] == legacy["category"] == "Diffusion"
    assert cmake_set(top, "EXTENSION_DEPENDS").split() == catalog["build_dependencies"] == legacy["depends"].split()
    assert cmake_set(top, "EXTENSION_DESCRIPTION") == legacy["description"]
    assert cmake_set(top, "EXTENSION_ICONURL") == legacy["iconurl"]
    assert legacy["scmurl"].removesuffix(".git") == catalog["scm_url"]
    assert 'translate("qSlicerAbstractCoreModule", "Diffusion")' in (MODULE / "SirenCompress.py").read_text()
    assert set(catalog) <= {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                            "dicom_support_rule", "build_subdirectory", "enabled", "tier"}


def test_top_level_builds_both_folders():
    top = (REPO / "CMakeLists.txt").read_text()
    assert re.findall(r"add_subdirectory\((\w+)\)", top) == ["SirenCompressLib", "SirenCompress"]


def test_every_library_file_is_shipped():
    text = (REPO / "SirenCompressLib" / "CMakeLists.txt").read_text()
    listed = set(cmake_list(text, "MODULE_PYTHON_SCRIPTS"))
    on_disk = {p.relative_to(REPO / "SirenCompressLib").as_posix() for p in (REPO / "SirenCompressLib").rglob("*.py")}
    assert listed == on_disk
    assert "WITH_SUBDIR" in text


def test_every_module_file_is_shipped():
    text = (MODULE / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "SirenCompress")
    scripts = set(cmake_list(text, "MODULE_PYTHON_SCRIPTS"))
    resources = set(cmake_list(text, "MODULE_PYTHON_RESOURCES"))
    assert scripts == {p.name for p in MODULE.glob("*.py")}
    assert resources == {p.relative_to(MODULE).as_posix() for p in (MODULE / "Resources").rglob("*") if p.is_file()}
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in (MODULE / "CMakeLists.txt").read_text()


def test_ui_widgets_are_bound_to_parameter_node_fields():
    ui = ET.parse(MODULE / "Resources" / "UI" / "SirenCompress.ui")
    bound = {prop.findtext("string") for prop in ui.iter("property") if prop.get("name") == "SlicerParameterName"}
    fields = parameter_node_fields()
    assert bound == fields  # every widget names a field, and every field has a widget
    assert set(PANEL_PARAMETERS.values()) <= fields  # the file writer reads the same names


def test_widgets_used_by_the_code_exist_in_the_ui():
    ui = ET.parse(MODULE / "Resources" / "UI" / "SirenCompress.ui")
    names = {w.get("name") for w in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE / "SirenCompress.py").read_text()))
    assert used <= names, used - names


def test_reader_and_writer_are_in_the_module_namespace():
    """qSlicerScriptedFileReader/Writer.cxx look the classes up by name in the module's namespace."""
    names = {alias.name for node in module_tree().body if isinstance(node, ast.ImportFrom) for alias in node.names}
    names |= {n.name for n in module_tree().body if isinstance(n, ast.ClassDef)}
    assert {"SirenCompressFileReader", "SirenCompressFileWriter"} <= names


def test_module_classes_follow_slicer_naming():
    classes = {n.name for n in module_tree().body if isinstance(n, ast.ClassDef)}
    assert {"SirenCompress", "SirenCompressWidget", "SirenCompressLogic", "SirenCompressTest",
            "SirenCompressParameterNode"} <= classes


def test_module_requirements_cover_the_library_needs():
    requirements = {line.strip() for line in (MODULE / "Resources" / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")}
    pyproject = (REPO / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", pyproject, re.S).group(1)
    names = {re.match(r'\s*"([A-Za-z0-9_-]+)', line).group(1) for line in deps.splitlines()
             if re.match(r'\s*"', line)}
    assert names - {"numpy", "torch"} == requirements  # Slicer has numpy; torch comes from PyTorchUtils
