"""docs/: the generated reference is up to date, links resolve, every condition reason is explained."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_is_generated_from_the_schema() -> None:
    assert (DOCS / "reference.md").read_text() == generator().render(), (
        "docs/reference.md is out of date: run python docs/gen_reference.py")


def test_check_mode_detects_a_stale_reference(tmp_path: Path) -> None:
    gen = generator()
    out = tmp_path / "reference.md"
    assert gen.main(["-o", str(out)]) == 0 and gen.main(["--check", "-o", str(out)]) == 0
    out.write_text(out.read_text().replace("maxBodyBytes", "maxBodySize"))
    assert gen.main(["--check", "-o", str(out)]) == 1


def test_reference_covers_every_spec_field() -> None:
    from modeldeploy_api.crd import build_crd

    text = (DOCS / "reference.md").read_text()

    def walk(node: dict[str, object], path: str) -> None:
        props = node.get("properties")
        if isinstance(props, dict):
            assert f"## `{path}`" in text, path
            for name, sub in props.items():
                assert re.search(rf"\| \[?`{re.escape(name)}`", text), f"{path}.{name}"
                inner = sub.get("items") if sub.get("type") == "array" else sub
                if isinstance(inner, dict) and "properties" in inner:
                    walk(inner, f"{path}.{name}" + ("[]" if sub.get("type") == "array" else ""))

    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    walk(schema["spec"], "spec")
    for field in ("storage", "auth", "limits", "credentialsSecretRef", "caBundleRef"):
        assert f"`{field}`" in text


LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    prose = re.sub(r"`[^`\n]*`", "", page.read_text())  # code spans hold patterns, not links
    for target, anchor in LINK.findall(prose):
        if re.match(r"^[a-z]+://", target):
            continue
        resolved = (page.parent / target).resolve()
        assert resolved.exists(), f"{page.name}: broken link {target}"
        if anchor and resolved.suffix == ".md":
            headings = {_anchor(h) for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)}
            assert anchor[1:] in headings, f"{page.name}: no heading {anchor} in {target}"


def _anchor(heading: str) -> str:
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-")


def test_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"({page.name})" in index, f"docs/README.md does not link {page.name}"


REASONS = ["Progressing", "RollingOut", "Available", "ScaledToZero", "ProgressDeadlineExceeded", "ReplicaFailure",
           "ApplyFailed", "InvalidSpec", "Paused", "AnalysisFailed", "RolloutAborted", "ValidationFailed",
           "FeatureDrift", "InsufficientData", "ModelLoadFailed"]


def test_troubleshooting_explains_every_condition_reason() -> None:
    headings = set(re.findall(r"^### (\w+)$", (DOCS / "troubleshooting.md").read_text(), re.M))
    assert set(REASONS) <= headings, set(REASONS) - headings


def test_the_reasons_listed_are_the_operators() -> None:
    """Each reason is really produced by the operator's code (so the list does not go stale silently)."""
    code = "\n".join(p.read_text() for p in (ROOT / "operator" / "modeldeploy_operator").glob("*.py"))
    for reason in REASONS:
        assert f'"{reason}"' in code, reason
