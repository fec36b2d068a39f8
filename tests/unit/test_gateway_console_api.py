"""The API the window console codes against, without Kafka or Redis: who may read the audit
list, what /v1/me says, what a look-up shows (the balance only for a verified employee), how a
command's outcome reads in the audit list, and the routes' edge (tokens, bodies, statuses)."""

from datetime import datetime

import pytest

from shared.envelope import CHINA_TZ
from shared.tokens import Principal
from services.gateway.domain import access
from services.gateway.domain.views import audit_entry_view, lookup_view, me_view
from services.gateway.storage.audit import Entry, read_member
from tests.gateway_stand_in import APP, FATHER, ISSUERS, ME, WINDOW, problem

CLERK = Principal("window", clerk_id="clerk-1", region="610100")
CHIEF = Principal("supervisor", clerk_id="chief", region="610100")
PERSON = Principal("app", person_id=ME)
SUPERVISOR = {"Authorization": f"Bearer {ISSUERS.mint('supervisor', clerk_id='chief', region='610100')}"}


# -- who may read the audit list ---------------------------------------------------------------
def test_a_window_clerk_reads_only_his_own_entries():
    assert access.audit_scope(CLERK, None) == ("610100", "clerk-1")
    assert access.audit_scope(CLERK, "clerk-1") == ("610100", "clerk-1")
    with pytest.raises(access.Forbidden):
        access.audit_scope(CLERK, "clerk-2")


def test_a_supervisor_reads_the_whole_region_or_one_clerk_of_it():
    assert access.audit_scope(CHIEF, None) == ("610100", None)
    assert access.audit_scope(CHIEF, "clerk-2") == ("610100", "clerk-2")


def test_an_app_token_reads_no_audit_list():
    with pytest.raises(access.Forbidden):
        access.audit_scope(PERSON, None)


# -- views -------------------------------------------------------------------------------------
def test_me_names_the_clerk_and_region_or_the_masked_person():
    assert me_view(CLERK) == {"role": "window", "clerk_id": "clerk-1", "region": "610100", "region_name": "西安市",
                              "person_id": None}
    assert me_view(PERSON) == {"role": "app", "clerk_id": None, "region": None, "region_name": None,
                               "person_id": "610***********0018"}


FOUND = {"person_id": "610***********0018", "registered": True, "region": "610100", "scheme": "employee"}
ACCOUNT = {"person_id": "610***********0018", "registered": True, "region": "610100", "scheme": "employee",
           "balance": "123.45"}


@pytest.mark.parametrize("matches,balance", [(True, "123.45"), (False, None), (None, None)])
def test_the_balance_shows_only_once_the_name_is_verified(matches, balance):
    view = lookup_view(FOUND | {"name_matches": matches}, ACCOUNT)
    assert (view["name_verified"], view["balance"], view["region_name"]) == (matches, balance, "西安市")


def test_a_resident_has_no_balance_and_an_unknown_person_is_not_registered():
    resident = lookup_view(FOUND | {"scheme": "resident", "name_matches": True}, ACCOUNT | {"balance": None})
    assert (resident["scheme"], resident["balance"]) == ("resident", None)
    unknown = lookup_view({"person_id": "610***********0018", "registered": False, "region": None, "scheme": None,
                           "name_matches": None}, None)
    assert unknown == {"person_id": "610***********0018", "registered": False, "region": None, "region_name": None,
                       "scheme": None, "name_verified": None, "balance": None}


@pytest.mark.parametrize("outcome,shown", [("created", "accepted"), ("revoked", "accepted"),
                                           ("payment_order_changed", "accepted"), ("rejected", "refused"),
                                           ("pending", "pending"), ("answered", "answered")])
def test_a_commands_outcome_reads_accepted_refused_or_pending(outcome, shown):
    assert audit_entry_view({"outcome": outcome, "action": "x"})["outcome"] == shown


def test_an_audit_entry_is_the_same_bytes_for_the_same_record():
    at = datetime(2026, 11, 20, 10, 15, tzinfo=CHINA_TZ)
    entry = Entry("e-1", at, "clerk-1", "610100", "lookup", "q-1", "610***********0018", "answered", "NAME_MISMATCH")
    again = Entry("e-1", at, "clerk-1", "610100", "lookup", "q-1", "610***********0018", "answered", "NAME_MISMATCH")
    assert entry.member() == again.member() and entry.score == int(at.timestamp() * 1000)
    assert read_member(entry.member().encode()) == {
        "at": at.isoformat(), "clerk_id": "clerk-1", "region": "610100", "action": "lookup", "command_id": "q-1",
        "subject_id": "610***********0018", "subject_region": None, "outcome": "answered",
        "reason_code": "NAME_MISMATCH"}


# -- the HTTP edge -----------------------------------------------------------------------------
async def test_me_answers_each_role_and_401_without_a_token(api):  # noqa: F811
    assert (await api.get("/v1/me", headers=WINDOW)).json()["role"] == "window"
    assert (await api.get("/v1/me", headers=SUPERVISOR)).json()["clerk_id"] == "chief"
    assert (await api.get("/v1/me", headers=APP)).json()["person_id"] == "610***********0018"
    problem(await api.get("/v1/me"), 401)


def _answers(api, *, registered=True, matches=None, scheme="employee"):  # noqa: F811
    api.broker.answers["QueryPerson"] = lambda p: ("PersonFound", {
        "person_id": "masked", "registered": registered, "region": "610100" if registered else None,
        "scheme": scheme if registered else None, "name_matches": matches if "name" in p and registered else None})
    api.broker.answers["QueryAccount"] = lambda p: ("AccountFound", {
        "person_id": "masked", "registered": registered, "region": "610100", "scheme": scheme, "balance": "88.00"})


async def test_a_lookup_asks_both_services_and_never_sends_the_name_to_settlement(api):  # noqa: F811
    _answers(api, matches=True)
    r = await api.post("/v1/person-lookups", json={"id_number": FATHER, "name": "王大山"}, headers=WINDOW)
    assert r.status_code == 200, r.text
    assert r.json() == {"person_id": "masked", "registered": True, "region": "610100", "region_name": "西安市",
                        "scheme": "employee", "name_verified": True, "balance": "88.00"}
    sent = {m["event_type"]: (topic, key, m["payload"]) for topic, key, m in api.broker.sent}
    assert sent["QueryPerson"] == ("binding.commands", FATHER.encode(), {"person_id": FATHER, "name": "王大山"})
    assert sent["QueryAccount"] == ("settlement.queries", FATHER.encode(), {"person_id": FATHER})
    [audit] = [m for topic, _, m in api.broker.sent if topic == "gateway.audit"]
    assert audit["payload"]["action"] == "lookup" and "王大山" not in str(audit)
    assert "王大山" not in r.text


async def test_a_lookup_of_an_unknown_person_is_404_and_an_app_reaches_only_its_own(api):  # noqa: F811
    _answers(api, registered=False)
    problem(await api.post("/v1/person-lookups", json={"id_number": FATHER}, headers=WINDOW), 404, "UNKNOWN_PERSON")
    problem(await api.post("/v1/person-lookups", json={"id_number": FATHER}, headers=APP), 403)
    problem(await api.post("/v1/person-lookups", json={"id_number": "12345"}, headers=WINDOW), 422,
            "INVALID_ID_NUMBER")
    problem(await api.post("/v1/person-lookups", json={"id_number": FATHER, "nick": "x"}, headers=WINDOW), 422,
            "INVALID_COMMAND")


async def test_the_audit_list_is_403_for_an_app_and_for_another_clerk(api):  # noqa: F811
    problem(await api.get("/v1/audit", headers=APP), 403)
    problem(await api.get("/v1/audit", params={"clerk_id": "clerk-2"}, headers=WINDOW), 403)
    problem(await api.get("/v1/audit", params={"from": "2026-01-01", "to": "2027-06-01"}, headers=WINDOW), 422,
            "INVALID_DATES")
