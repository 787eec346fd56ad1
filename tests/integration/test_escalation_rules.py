"""``/api/escalation-rules`` against ``naboom serve`` and PostgreSQL: CRUD, validation, audit."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.api_helpers import Api, assert_problem
from tests.support import Server, unique_region

RULES = "/api/escalation-rules"


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server.stack, server.stack.admin())


def _level(minutes: int, *targets: str, template: str = "Incident {incident} in {region}: {minutes} min") -> dict[str, Any]:
    return {"threshold_minutes": minutes, "targets": list(targets) or ["+27820000001"], "template": template}


def _rule(region: str, *levels: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"region": region, "name": f"rule-{uuid.uuid4().hex[:8]}", "levels": list(levels) or [_level(5)], **fields}


def _audit(admin: Api, action: str, target_id: str) -> list[dict[str, Any]]:
    return list(admin.ok("GET", f"/api/audit?action={action}&target_id={target_id}")["items"])


async def test_an_admin_creates_reads_changes_and_deletes_a_rule_and_every_change_is_audited(admin: Api) -> None:
    region = admin.new_region()
    body = _rule(region, _level(5, "+27820000001", "+27820000002"), _level(15, "+4420700000001"),
                 condition="unresolved")
    created = admin.ok("POST", RULES, body, status=201)
    assert created["region"] == region and created["name"] == body["name"]
    assert created["condition"] == "unresolved" and created["active"] is True
    assert created["levels"] == body["levels"]
    assert admin.ok("GET", f"{RULES}/{created['id']}") == created

    (entry,) = _audit(admin, "escalation_rule.create", created["id"])
    assert entry["target_type"] == "escalation_rule"
    assert entry["detail"] == {k: body[k] for k in ("region", "name", "condition", "levels")} | {"active": True}

    new_levels = [_level(3, "+27820000009", template="Level {level}: {link}")]
    changed = admin.ok("PATCH", f"{RULES}/{created['id']}", {"levels": new_levels, "active": False, "condition": "open"})
    assert changed["levels"] == new_levels and changed["active"] is False and changed["condition"] == "open"
    assert changed["name"] == body["name"] and changed["region"] == region
    assert admin.ok("GET", f"{RULES}/{created['id']}") == changed
    (update,) = _audit(admin, "escalation_rule.update", created["id"])
    assert update["detail"] == {"levels": new_levels, "active": False, "condition": "open"}

    r = admin.request("DELETE", f"{RULES}/{created['id']}")
    assert r.status_code == 204, r.text
    assert_problem(admin.get(f"{RULES}/{created['id']}"), 404)
    (deleted,) = _audit(admin, "escalation_rule.delete", created["id"])
    assert deleted["detail"]["name"] == body["name"] and deleted["detail"]["levels"] == new_levels


async def test_rules_list_by_region_then_name_filtered_and_paged(admin: Api) -> None:
    region, other = admin.new_region(), admin.new_region()
    names = ["c-rule", "a-rule", "b-rule"]
    for name in names:
        admin.ok("POST", RULES, {**_rule(region), "name": name}, status=201)
    admin.ok("POST", RULES, _rule(other), status=201)

    listed = admin.ok("GET", f"{RULES}?region={region}")
    assert listed["total"] == 3 and [r["name"] for r in listed["items"]] == sorted(names)
    page = admin.ok("GET", f"{RULES}?region={region}&limit=2&offset=2")
    assert page == {"items": listed["items"][2:], "total": 3, "limit": 2, "offset": 2}
    assert admin.ok("GET", f"{RULES}?region={unique_region()}") == {"items": [], "total": 0, "limit": 50, "offset": 0}
    everything = admin.ok("GET", f"{RULES}?limit=500")
    assert {region, other} <= {r["region"] for r in everything["items"]}


@pytest.mark.parametrize(
    ("levels", "says"),
    [
        ([], "at least one level"),
        ([_level(0)], "level 1: threshold_minutes must be 1 to 10080"),
        ([_level(10), _level(10)], "level 2: threshold_minutes 10 must be greater than level 1's 10"),
        ([_level(10), _level(5)], "level 2: threshold_minutes 5 must be greater than level 1's 10"),
        ([_level(5, "0821234567")], "level 1: target '0821234567' is not an E.164 phone number"),
        ([_level(5), _level(6, "+27 82 000 0001")], "level 2: target '+27 82 000 0001' is not an E.164"),
        ([{**_level(5), "targets": []}], "level 1: targets is empty"),
        ([_level(5, template="Call {boss}")], "level 1: unknown placeholder {boss}"),
        ([_level(5, template="")], "level 1: the template is empty"),
        ([_level(5, template="x" * 481)], "at most 480"),
        ([_level(5, template="Incident {incident")], "braces do not balance"),
    ],
    ids=["no-levels", "zero-threshold", "equal-thresholds", "falling-thresholds", "national-number", "spaces",
         "no-targets", "unknown-placeholder", "empty-template", "long-template", "unbalanced-braces"],
)
async def test_a_rule_that_cannot_work_is_refused_with_a_problem_naming_the_level_and_the_fault(
    admin: Api, levels: list[dict[str, Any]], says: str
) -> None:
    region = admin.new_region()
    problem = assert_problem(admin.post(RULES, {**_rule(region), "levels": levels}), 422)
    assert says in problem["detail"], problem
    assert admin.ok("GET", f"{RULES}?region={region}")["total"] == 0


async def test_a_rule_for_an_unknown_region_is_refused_naming_the_region(admin: Api) -> None:
    region = unique_region()
    problem = assert_problem(admin.post(RULES, _rule(region)), 422)
    assert f"unknown region {region!r}" in problem["detail"]
    rule = admin.ok("POST", RULES, _rule(admin.new_region()), status=201)
    moved = assert_problem(admin.patch(f"{RULES}/{rule['id']}", {"region": region}), 422)
    assert region in moved["detail"]
    assert admin.ok("GET", f"{RULES}/{rule['id']}") == rule


async def test_a_malformed_rule_body_is_refused_naming_the_field(admin: Api) -> None:
    region = admin.new_region()
    for bad, field in [
        ({"condition": "whenever"}, "condition"),
        ({"name": ""}, "name"),
        ({"levels": [{"threshold_minutes": "five", "targets": ["+27820000001"], "template": "x"}]}, "threshold_minutes"),
        ({"id": str(uuid.uuid4())}, "id"),
        ({"region": "no spaces allowed"}, "region"),
    ]:
        problem = assert_problem(admin.post(RULES, {**_rule(region), **bad}), 400)
        assert field in problem["detail"] + str(problem.get("errors")), (bad, problem)


async def test_a_change_that_breaks_a_rule_is_refused_and_changes_nothing(admin: Api) -> None:
    rule = admin.ok("POST", RULES, _rule(admin.new_region(), _level(5), _level(10)), status=201)
    problem = assert_problem(admin.patch(f"{RULES}/{rule['id']}", {"levels": [_level(10), _level(10)], "active": False}), 422)
    assert "level 2" in problem["detail"]
    assert admin.ok("GET", f"{RULES}/{rule['id']}") == rule
    assert _audit(admin, "escalation_rule.update", rule["id"]) == []


async def test_an_unknown_rule_is_404_for_every_method(admin: Api) -> None:
    missing = f"{RULES}/{uuid.uuid4()}"
    assert "no escalation rule" in assert_problem(admin.get(missing), 404)["detail"]
    assert_problem(admin.patch(missing, {"active": False}), 404)
    assert_problem(admin.request("DELETE", missing), 404)
