"""clusterdns.core.convert.unwrap_lists: the one place that opens ``kind: List`` wrappers
(the manifest loader and clusterdns.testing both go through it)."""

from __future__ import annotations

from typing import Any

import pytest

from clusterdns.core.convert import unwrap_lists

SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}
RAW = {"metadata": {"name": "b"}}  # a raw API list item: no kind

CASES: list[tuple[str, list[Any], list[Any], list[str]]] = [
    # name, objects, yielded, kinds of the wrappers on_list saw (in order)
    ("plain", [SVC], [SVC], []),
    ("kubectl List", [{"kind": "List", "items": [SVC, RAW]}], [SVC, RAW], ["List"]),
    ("raw ServiceList", [{"kind": "ServiceList", "items": [RAW, SVC]}],
     [{**RAW, "kind": "Service"}, SVC], ["ServiceList"]),
    ("nested", [{"kind": "List", "items": [{"kind": "PodList", "items": [RAW]}, None, 7]}],
     [{**RAW, "kind": "Pod"}, None, 7], ["List", "PodList"]),
    ("items not a list", [{"kind": "List", "items": "x"}], [{"kind": "List", "items": "x"}], []),
    ("not a mapping", [None, "text"], [None, "text"], []),
]


@pytest.mark.parametrize(("objects", "yielded", "lists"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_unwrap_lists(objects: list[Any], yielded: list[Any], lists: list[str]) -> None:
    seen: list[str] = []
    assert list(unwrap_lists(objects, on_list=lambda obj: seen.append(obj["kind"]))) == yielded
    assert seen == lists


def test_on_list_stops_the_iteration() -> None:
    def refuse(obj: Any) -> None:
        raise ValueError(obj["kind"])

    with pytest.raises(ValueError, match="ServiceList"):
        list(unwrap_lists([SVC, {"kind": "ServiceList", "items": [RAW]}], on_list=refuse))
