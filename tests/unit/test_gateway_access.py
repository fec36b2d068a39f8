"""Who may do what through the HTTP API: an app token only for its own person and only as the
grantor; a window clerk for anyone."""

import pytest

from shared.tokens import Principal
from services.gateway.domain import access

ME, OTHER = "610102198503150018", "610302195501200031"
APP = Principal("app", person_id=ME)
WINDOW = Principal("window", clerk_id="clerk-1", region="610100")
SUPERVISOR = Principal("supervisor", clerk_id="chief", region="610100")


def test_an_app_token_sees_only_its_own_person():
    access.check_may_see(APP, ME)
    with pytest.raises(access.Forbidden):
        access.check_may_see(APP, OTHER)


def allowed(check, principal: Principal, person_id: str) -> bool:
    try:
        check(principal, person_id)
    except access.Forbidden:
        return False
    return True


@pytest.mark.parametrize("check", [access.check_may_see, access.check_may_grant])
def test_a_clerk_passes_the_role_check_for_anyone_an_app_only_for_its_own_person(check):
    """The role check only: the clerk's region is check_acts_in_region's (next test)."""
    seen = {(p.role, person): allowed(check, p, person) for p in (APP, WINDOW, SUPERVISOR) for person in (ME, OTHER)}
    assert seen == {("app", ME): True, ("app", OTHER): False, ("window", ME): True, ("window", OTHER): True,
                    ("supervisor", ME): True, ("supervisor", OTHER): True}


def test_a_clerk_acts_only_for_grantors_of_the_clerks_region():
    def acts(principal: Principal, grantor_region: str | None) -> bool:
        try:
            access.check_acts_in_region(principal, grantor_region)
        except access.Forbidden:
            return False
        return True
    assert acts(WINDOW, "610100") and acts(SUPERVISOR, "610100")
    assert not acts(WINDOW, "610300") and not acts(SUPERVISOR, "610300")
    assert acts(WINDOW, None)  # not registered: the binding service refuses it with its own reason
    assert acts(APP, "610300")  # an app acts for its own person, wherever insured


def test_an_app_token_creates_a_binding_only_as_its_grantor():
    access.check_may_grant(APP, ME)
    with pytest.raises(access.Forbidden):
        access.check_may_grant(APP, OTHER)


def test_an_app_revocation_is_asked_by_the_tokens_person():
    assert access.revocation_requester(APP, None) == ME
    assert access.revocation_requester(APP, ME) == ME
    with pytest.raises(access.Forbidden):
        access.revocation_requester(APP, OTHER)


def test_a_window_revocation_names_its_requester():
    assert access.revocation_requester(WINDOW, OTHER) == OTHER
    with pytest.raises(access.RequesterMissing):
        access.revocation_requester(WINDOW, None)


def test_a_payment_order_change_is_asked_by_the_apps_person_or_the_grantor_the_clerk_names():
    assert access.order_requester(APP, None) == ME
    with pytest.raises(access.Forbidden):
        access.order_requester(APP, OTHER)
    with pytest.raises(access.RequesterMissing):  # version 3: the clerk acts for a grantor of the region
        access.order_requester(WINDOW, None)
    assert access.order_requester(WINDOW, OTHER) == OTHER


def test_the_channel_comes_from_the_token():
    assert access.channel_of(APP) == {"channel": "app"}
    assert access.channel_of(WINDOW) == {"channel": "window", "clerk_id": "clerk-1"}
    assert access.channel_of(SUPERVISOR) == {"channel": "window", "clerk_id": "chief"}


def test_an_app_sees_an_outcome_only_when_it_concerns_its_person():
    created = {"command_id": "c", "grantor_id": ME, "beneficiary_id": OTHER}
    access.check_may_see_outcome(APP, created)
    with pytest.raises(access.Forbidden):
        access.check_may_see_outcome(APP, {"command_id": "c", "grantor_id": OTHER, "beneficiary_id": OTHER})
    swapped = {"command_id": "c", "beneficiary_id": OTHER, "changes": [{"grantor_id": OTHER}, {"grantor_id": ME}]}
    access.check_may_see_outcome(APP, swapped)
    access.check_may_see_outcome(APP, {"command_id": "c", "reason_code": "DUPLICATE_BINDING"})  # names nobody
    access.check_may_see_outcome(WINDOW, {"grantor_id": OTHER, "beneficiary_id": OTHER})
