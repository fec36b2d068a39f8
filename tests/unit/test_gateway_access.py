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


@pytest.mark.parametrize("clerk", [WINDOW, SUPERVISOR])
def test_a_clerk_sees_and_grants_for_anyone(clerk):
    access.check_may_see(clerk, OTHER)
    access.check_may_grant(clerk, OTHER)


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
