from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_operator.patches import merge_patch


def apply(doc: Any, patch: Any) -> Any:
    """RFC 7386 application, to check the patches round-trip."""
    if not isinstance(patch, dict):
        return patch
    out = dict(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = apply(out.get(k), v)
    return out


CASES = [
    ({}, {"a": 1}),
    ({"a": 1, "b": 2}, {"a": 1}),
    ({"rollout": {"step": 1, "stepStartedAt": "t"}}, {"rollout": {"step": 2}}),
    ({"conditions": [{"type": "Ready"}]}, {"conditions": []}),
    ({"x": {"y": {"z": 1}}}, {"x": {"y": {"z": 1}}}),
    ({"x": 1}, {"x": {"nested": True}}),
]


@pytest.mark.parametrize(("old", "new"), CASES)
def test_patch_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert apply(old, merge_patch(old, new)) == new


def test_removed_keys_become_null_and_unchanged_ones_are_left_out() -> None:
    assert merge_patch({"rollout": {"step": 1, "baseline": {"a": 1}}, "url": "u"},
                       {"rollout": {"step": 2}, "url": "u"}) == {"rollout": {"step": 2, "baseline": None}}
