"""The service-window console (/console) as a clerk uses it: headless Chromium (Debian's chromium
package, driven by Playwright; never a browser download) against binding, settlement, notify and
the gateway running as processes on the real broker and Redis. Every wait is Playwright's
auto-waiting `expect` or a wait on a Kafka record; each screen is saved under .run/screenshots/."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from datetime import timedelta

import httpx
import pytest

from shared import topics as t
from shared.envelope import now, seal
from shared.identity import mask_id_number
from shared.references import payment_reference
from tests.http_api import ISSUERS, gateway_env
from tests.support import (ROOT, ServiceProcess, body, cached_balances, charge_submitted, china_today, command,
                           eventually, institution_registered, payload_of, person_registered, wait_registered)

try:
    from playwright.async_api import async_playwright, expect
except ImportError:  # reported by the fixture, as a failure that says how to fix it
    async_playwright = expect = None

pytestmark = pytest.mark.integration

REGION, REGION_ZH = "610300", "宝鸡市"  # the clerks' region: the grantors here are insured in it
ELSEWHERE = "610100"                  # where their beneficiaries are
HOSPITAL = "H610300-CONSOLE"
SHOTS = ROOT / ".run" / "screenshots"
FULL_ID = re.compile(r"\d{17}[\dXx]")
SCAN = b"%PDF-1.4 signed personal commitment (scan)"


def chromium() -> str:
    """Debian's chromium: the real binary, or whatever `chromium` resolves to."""
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("The console's browser tests need Debian's chromium, which is not installed. Install it with "
                "`sudo apt-get install -y --no-install-recommends chromium` (or run `make test` as root, which "
                "installs it). Never `playwright install`: it downloads a browser.", pytrace=False)


@pytest.fixture(scope="module")
def platform(infra, bus, services, tmp_path_factory):
    """The session's platform (binding, settlement, notify), the gateway as deployed and one that
    never waits for an outcome (its page sees every command answered 202)."""
    log_dir = tmp_path_factory.mktemp("console")
    gateways = []
    urls = {}
    for name, env in (("gateway", {}), ("impatient", {"GATEWAY_COMMAND_TIMEOUT_MS": "1"})):
        # A reply topic and an audit projection group of its own: no gateway waits on a group
        # another module's gateways just left.
        # A short clock skew: the token that expires mid-session is refused soon after its exp.
        settings = gateway_env(infra, log_dir, GATEWAY_TOKEN_CLOCK_SKEW_SECONDS="5", **env)
        gateways.append(ServiceProcess("gateway", settings, log_dir / f"{name}.log"))
        urls[name] = f"http://127.0.0.1:{settings['HTTP_PORT']}"
    try:
        for process in gateways:
            process.start()
        yield urls
    finally:
        for process in reversed(gateways):
            process.stop()


@pytest.fixture(scope="module")
async def browser():
    if async_playwright is None:
        pytest.fail("Playwright is not installed: `.venv/bin/pip install -e '.[dev]'` (then no "
                    "`playwright install`: the tests use Debian's chromium).", pytrace=False)
    executable = chromium()
    expect.set_options(timeout=30_000)
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=executable, headless=True)
        yield launched
        await launched.close()


class Counter:
    """One clerk's browser tab on /console, and the platform behind it."""

    def __init__(self, page, url: str, bus, redis, http: httpx.AsyncClient) -> None:
        self.page, self.url, self.bus, self.redis, self.http = page, url, bus, redis, http
        self.messages: list[str] = []

    async def open(self, token: str | None = None):
        response = await self.page.goto(f"{self.url}/console")
        await expect(self.page.locator("body")).to_have_attribute("data-ready", "true")
        if token:
            await self.sign_in(token)
        return response

    async def sign_in(self, token: str) -> None:
        field = self.page.get_by_label("窗口令牌")
        await field.fill(token)
        await field.press("Enter")

    async def tab(self, name: str) -> None:
        await self.page.get_by_role("link", name=name).click()

    async def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)

    async def person(self, region=REGION, scheme="employee", balance="0.00") -> dict:
        p = person_registered(region, scheme, balance)
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        await wait_registered(self.redis, [p["person_id"]], timeout=30)
        return p

    async def bind(self, grantor, beneficiary, relation="father", order=1) -> str:
        """A binding made through the API (setting the scene for the page)."""
        today = china_today()

        def party(p):
            return {k: v for k, v in {"id_number": p["person_id"], "name": p["name"], "region": p["region"],
                                      "phone": p.get("phone")}.items() if v}
        form = {"grantor": party(grantor), "beneficiary": party(beneficiary), "relation": relation,
                "payment_order": order, "start_date": today.isoformat(),
                "end_date": (today + timedelta(days=365)).isoformat(), "notice_accepted": True,
                "signature_digest": "sha256:" + "ab" * 32}
        r = await self.http.post("/v1/bindings", json=form, headers=auth(WINDOW))
        assert r.status_code == 201, r.json()
        return r.json()["outcome"]["binding_id"]

    async def hospital(self) -> None:
        """The test's hospital, registered by its bureau (settlement knows it)."""
        await self.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered",
                                                        institution_registered(HOSPITAL, REGION, "宝鸡测试医院")),
                            key=HOSPITAL)
        await eventually(lambda: self.redis.hget("stl:inst", HOSPITAL), 30, "the hospital registered")

    async def settle(self, patient: dict, fen: int) -> dict:
        """A charge of the patient's at the test's hospital, settled; returns the ChargeSubmitted."""
        charge = charge_submitted(patient, HOSPITAL, REGION, fen)
        await self.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])
        [settled] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge["charge_id"])
        assert body(settled)["event_type"] == "ChargeSettled", payload_of(settled)
        return charge

    def row(self, binding_id: str):
        return self.page.locator(f'#lookup-bindings tr[data-binding-id="{binding_id}"]')

    async def look_up(self, person: dict, name: str | None = None) -> None:
        await self.tab("查询参保人")
        await self.page.locator("#lookup-id").fill(person["person_id"])
        await self.page.locator("#lookup-name").fill(name or "")
        await self.page.locator("#lookup-name").press("Enter")
        await expect(self.page.locator("#lookup-facts")).to_contain_text(mask_id_number(person["person_id"]))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def window(clerk: str = "clerk-bj-0001", role: str = "window", **claims) -> str:
    return ISSUERS.mint(role, clerk_id=clerk, region=REGION, **claims)  # type: ignore[arg-type]


WINDOW = window()


@pytest.fixture
async def counter(platform, browser, bus, clean_redis):
    context = await browser.new_context(viewport={"width": 1024, "height": 600}, locale="zh-CN")
    page = await context.new_page()
    async with httpx.AsyncClient(base_url=platform["gateway"], timeout=30) as http:
        c = Counter(page, platform["gateway"], bus, clean_redis, http)
        errors: list[str] = []
        page.on("console", lambda m: c.messages.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield c
    await context.close()
    assert not errors, errors
    # The page writes nothing about people to the browser's console, and the policy blocked nothing.
    assert not [m for m in c.messages if FULL_ID.search(m) or "Content Security Policy" in m], c.messages


async def test_sign_in_refuses_an_app_token_and_a_bad_one_and_shows_the_clerk_once_accepted(counter):
    page = counter.page
    someone = await counter.person()
    response = await counter.open()
    assert response.status == 200 and response.url.endswith("/console")   # what `make run` checks before printing it
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    await expect(page.get_by_label("窗口令牌")).to_be_focused()
    await expect(page.locator("nav")).to_be_hidden()

    await counter.sign_in("not-a-token")
    await expect(page.locator("#signin-token-error")).to_contain_text("令牌无效或已过期")
    await counter.sign_in(ISSUERS.mint("app", person_id=someone["person_id"]))
    await expect(page.locator("#signin-token-error")).to_contain_text("经办窗口只接受窗口令牌或主管令牌")
    await expect(page.locator("nav")).to_be_hidden()
    await counter.shot("sign-in-refused")

    await page.keyboard.press("Control+A")
    await page.keyboard.type(WINDOW)       # the keyboard alone: the field keeps the focus
    await page.keyboard.press("Enter")
    await expect(page.locator("#who")).to_contain_text("clerk-bj-0001")
    await expect(page.locator("#who")).to_contain_text(REGION_ZH)
    await expect(page.locator("#who-role")).to_have_text("窗口")
    await expect(page.locator("#lookup-id")).to_be_focused()
    assert "token" not in page.url and WINDOW not in page.url
    await counter.shot("signed-in")

    # English one click away, remembered; the session survives a reload of the tab.
    await page.get_by_role("button", name="English").click()
    await expect(page.get_by_role("link", name="Look up")).to_be_visible()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.reload()
    await expect(page.locator("#who")).to_contain_text("Baoji")
    await expect(page.get_by_role("heading", name="Look up a person")).to_be_visible()
    await counter.shot("signed-in-english")
    await page.get_by_role("button", name="中文").click()
    await expect(page.get_by_role("link", name="查询参保人")).to_be_visible()

    await page.get_by_role("button", name="退出登录").click()
    await expect(page.locator("#signin-token-error")).to_contain_text("已退出登录")
    await page.reload()
    await expect(page.get_by_label("窗口令牌")).to_be_visible()
    await expect(page.locator("nav")).to_be_hidden()


async def test_look_up_verifies_the_name_before_the_balance_and_lists_bindings_with_roles(counter):
    page = counter.page
    son = await counter.person(balance="321.00")
    father = await counter.person(region=ELSEWHERE, scheme="resident")
    binding = await counter.bind(son, father)
    await counter.open(WINDOW)

    await counter.look_up(father)
    facts = page.locator("#lookup-facts")
    await expect(facts).to_contain_text("姓名未核验")
    await expect(facts).to_contain_text("核验姓名后显示")
    await expect(facts).to_contain_text("居民医保")
    await expect(counter.row(binding)).to_contain_text("使用者")
    await expect(counter.row(binding)).to_contain_text(mask_id_number(son["person_id"]))
    assert father["name"] not in await page.locator("#lookup-result").inner_text()

    await counter.look_up(son, name="别人的名字")
    await expect(facts).to_contain_text("姓名与参保登记不一致")
    await expect(facts).not_to_contain_text("321.00")

    await counter.look_up(son, name=son["name"])
    await expect(facts).to_contain_text(f"{son['name']} 已核验 ✓")
    await expect(facts).to_contain_text("321.00 元")
    await expect(facts).to_contain_text(REGION_ZH)
    row = counter.row(binding)
    await expect(row).to_contain_text("授权者")
    await expect(row).to_contain_text(mask_id_number(father["person_id"]))
    await expect(row).to_contain_text("父亲")
    await expect(row).to_contain_text("有效")
    await counter.shot("look-up")

    unknown = person_registered()
    await counter.tab("查询参保人")
    await page.locator("#lookup-id").fill(unknown["person_id"])
    await page.locator("#lookup-id").press("Enter")
    await expect(page.locator("#lookup-id-error")).to_contain_text("未查询到参保信息")


async def fill_binding(page, grantor, beneficiary, relation="mother", order=1) -> None:
    for role, p in (("grantor", grantor), ("beneficiary", beneficiary)):
        await page.locator(f"#create-{role}-id").fill(p["person_id"])
        await page.locator(f"#create-{role}-name").fill(p["name"])
        await page.locator(f"#create-{role}-region").select_option(p["region"])
    await page.locator("#create-grantor-phone").fill(grantor["phone"])
    await page.locator("#create-relation").select_option(relation)
    await page.locator("#create-order").select_option(str(order))
    await page.locator("#create-notice").check()
    await page.locator("#create-scan").set_input_files(
        {"name": "commitment.pdf", "mimeType": "application/pdf", "buffer": SCAN})
    await expect(page.locator("#create-scan-digest")).to_contain_text(
        "sha256:" + hashlib.sha256(SCAN).hexdigest()[:16])


async def test_create_at_the_window_is_accepted_or_refused_beside_the_field_concerned(counter):
    page = counter.page
    son, daughter = await counter.person(), await counter.person()
    resident = await counter.person(scheme="resident")
    mother = await counter.person(region=ELSEWHERE, scheme="resident")
    await counter.open(WINDOW)
    await counter.tab("办理绑定")
    await expect(page.locator("#create-grantor-id")).to_be_focused()

    await page.get_by_role("button", name="提交办理").click()   # nothing filled in: said beside each field
    await expect(page.locator("#create-grantor-id-error")).to_contain_text("请填写此项")
    await expect(page.locator("#create-scan-error")).to_contain_text("请选择签字承诺书的扫描件")

    await fill_binding(page, son, mother)
    await page.get_by_role("button", name="提交办理").click()
    result = page.locator("#create-result")
    await expect(result).to_contain_text("绑定已办理")
    await expect(result).to_contain_text(mask_id_number(son["person_id"]))
    await expect(result).to_contain_text(mask_id_number(mother["person_id"]))
    await expect(result).to_contain_text("第一顺位")
    await counter.shot("create-accepted")
    [sent] = await counter.bus.watchers[t.BINDING_COMMANDS].wait_for(
        lambda r: son["person_id"].encode() in r.value and body(r)["event_type"] == "CreateBinding")
    assert payload_of(sent)["signature_digest"] == "sha256:" + hashlib.sha256(SCAN).hexdigest()
    assert (payload_of(sent)["channel"], payload_of(sent)["clerk_id"]) == ("window", "clerk-bj-0001")
    await expect(page.locator("#create-grantor-id")).to_have_value("")   # the form is cleared for the next

    await fill_binding(page, resident, mother, order=2)
    await page.get_by_role("button", name="提交办理").click()
    await expect(page.locator("#create-grantor-error")).to_have_text("授权人须为职工医保参保人且有个人账户")
    await expect(page.locator("#create-order-error")).to_be_empty()
    await counter.shot("create-refused-grantor")

    await page.locator("#create-grantor-id").fill(daughter["person_id"])
    await page.locator("#create-grantor-name").fill(daughter["name"])
    await page.locator("#create-order").select_option("1")
    await page.get_by_role("button", name="提交办理").click()
    await expect(page.locator("#create-order-error")).to_have_text("该支付顺位已被占用")
    await expect(page.locator("#create-grantor-error")).to_be_empty()
    await expect(page.locator("#create-order")).to_be_focused()
    await expect(page.locator("#create-order")).to_have_attribute("aria-invalid", "true")
    await counter.shot("create-refused-order")

    await page.locator("#create-beneficiary-name").fill("别人的名字")   # the refusal names the person it concerns
    await page.get_by_role("button", name="提交办理").click()
    await expect(page.locator("#create-beneficiary-name-error")).to_have_text("姓名与参保登记信息不一致")
    await expect(page.locator("#create-grantor-name-error")).to_be_empty()
    await expect(page.locator("#create-order-error")).to_be_empty()


async def test_a_command_still_pending_shows_in_progress_then_its_outcome(counter, platform):
    page = counter.page
    son, daughter = await counter.person(), await counter.person()
    mother = await counter.person(region=ELSEWHERE, scheme="resident")
    counter.url = platform["impatient"]   # this gateway answers every command 202
    await counter.open(WINDOW)
    await counter.tab("办理绑定")
    await fill_binding(page, son, mother)
    await page.get_by_role("button", name="提交办理").click()
    result = page.locator("#create-result")
    await expect(result).to_contain_text("处理中")
    await expect(result).to_contain_text("绑定已办理")
    await fill_binding(page, daughter, mother)
    await page.get_by_role("button", name="提交办理").click()
    await expect(page.locator("#create-order-error")).to_have_text("该支付顺位已被占用")


async def test_a_change_of_order_shows_the_swap_before_it_is_confirmed_and_the_list_updates(counter):
    page = counter.page
    mother = await counter.person(region=ELSEWHERE, scheme="resident")
    son, daughter = await counter.person(), await counter.person()
    first = await counter.bind(son, mother, relation="mother", order=1)
    second = await counter.bind(daughter, mother, relation="mother", order=2)
    await counter.open(WINDOW)

    # From the beneficiary: both grantors are on screen, so the swap shows at once.
    await counter.look_up(mother)
    await counter.row(second).get_by_role("button", name="变更顺位").click()
    dialog = page.locator("#order-dialog")
    await expect(dialog).to_be_visible()
    swap = page.locator("#order-swap")
    await expect(swap).to_contain_text(f"本绑定 {second}")
    await expect(swap).to_contain_text("第 2 顺位 → 第 1 顺位")
    await expect(swap).to_contain_text(f"绑定 {first}")
    await expect(swap).to_contain_text("第 1 顺位 → 第 2 顺位（两者互换）")
    await counter.shot("change-order-swap")
    await page.locator("#order-person").fill(son["person_id"])      # not this binding's grantor
    await page.get_by_role("button", name="确认变更").click()
    await expect(page.locator("#order-person-error")).to_contain_text("不符")
    await page.locator("#order-person").fill(daughter["person_id"])
    await page.get_by_role("button", name="确认变更").click()
    await expect(dialog).to_be_hidden()
    await expect(counter.row(second).locator("td").nth(3)).to_have_text("1")
    await expect(counter.row(first).locator("td").nth(3)).to_have_text("2")
    await expect(page.locator("#status")).to_contain_text("顺位已变更")
    await counter.shot("change-order-done")

    # From the grantor: the beneficiary's ID (checked against the masked one) shows the swap first.
    await counter.look_up(son, name=son["name"])
    await counter.row(first).get_by_role("button", name="变更顺位").click()
    await expect(page.get_by_role("button", name="确认变更")).to_be_disabled()
    await page.locator("#order-person").fill(mother["person_id"])
    await page.get_by_role("button", name="显示调整结果").click()
    await expect(swap).to_contain_text(f"绑定 {second}")
    await expect(swap).to_contain_text("第 1 顺位 → 第 2 顺位（两者互换）")
    await page.get_by_role("button", name="确认变更").click()
    await expect(dialog).to_be_hidden()
    await expect(counter.row(first).locator("td").nth(3)).to_have_text("1")


async def test_revoke_is_confirmed_for_the_grantor_and_the_binding_shows_revoked(counter):
    page = counter.page
    son, stranger = await counter.person(), await counter.person()
    father = await counter.person(region=ELSEWHERE, scheme="resident")
    binding = await counter.bind(son, father)
    await counter.open(WINDOW)

    # From the beneficiary, the clerk types the grantor's ID from the card; a wrong one is caught.
    await counter.look_up(father)
    await counter.row(binding).get_by_role("button", name="解除").click()
    dialog = page.locator("#revoke-dialog")
    await expect(dialog).to_contain_text(binding)
    await expect(page.locator("#revoke-grantor")).to_be_focused()
    await page.keyboard.type(stranger["person_id"])
    await page.keyboard.press("Enter")
    await expect(page.locator("#revoke-grantor-error")).to_contain_text("不符")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(counter.row(binding)).to_contain_text("有效")

    await counter.look_up(son, name=son["name"])
    await counter.row(binding).get_by_role("button", name="解除").click()
    await expect(dialog).to_contain_text("即本次查询的参保人")
    await expect(page.locator("#revoke-cancel")).to_be_focused()   # the safe choice has the focus
    await counter.shot("revoke-confirm")
    await page.get_by_role("button", name="确认解除").click()
    await expect(dialog).to_be_hidden()
    await expect(counter.row(binding)).to_contain_text("已解除")
    await expect(counter.row(binding).get_by_role("button")).to_have_count(0)
    await counter.shot("revoke-done")


async def test_a_grantors_consumption_shows_totals_by_beneficiary_and_prints(counter):
    page = counter.page
    await counter.hospital()
    son = await counter.person(balance="500.00")
    father = await counter.person(region=ELSEWHERE, scheme="resident")
    binding = await counter.bind(son, father)
    r = await counter.http.put(f"/v1/bindings/{binding}/limit", json={"monthly_limit": "100.00",
                                                                       "requested_by": son["person_id"]},
                               headers=auth(WINDOW))
    assert r.status_code == 200, r.json()
    for fen in (1230, 4560):
        await counter.settle(father, fen)

    await page.add_init_script("window.print = () => { document.body.dataset.printed = 'yes'; };")
    await counter.open(WINDOW)
    await counter.tab("共济消费")
    await page.locator("#consumption-id").fill(son["person_id"])
    await page.locator("#consumption-name").fill("别人的名字")
    await page.locator("#consumption-name").press("Enter")
    await expect(page.locator("#consumption-name-error")).to_contain_text("不能查询共济消费")
    await expect(page.locator("#consumption-result")).to_be_hidden()

    # From a look-up with the name verified, one click away.
    await counter.look_up(son, name=son["name"])
    await page.get_by_role("button", name="查询此人的共济消费").click()
    facts = page.locator("#consumption-facts")
    await expect(facts).to_contain_text("57.90 元")
    await expect(facts).to_contain_text(mask_id_number(son["person_id"]))
    totals = page.locator("#consumption-totals tbody tr")
    await expect(totals).to_have_count(1)
    await expect(totals).to_contain_text(mask_id_number(father["person_id"]))
    await expect(totals.locator("td").nth(1)).to_have_text("2")
    await expect(totals.locator("td").nth(2)).to_have_text("57.90")
    # This month: the limit, what it used and what it has left, and whether the binding is paused.
    await expect(totals.locator("td").nth(4)).to_have_text("100.00")
    await expect(totals.locator("td").nth(5)).to_have_text("57.90")
    await expect(totals.locator("td").nth(6)).to_have_text("42.10")
    await expect(totals.locator("td").nth(7)).to_have_text("有效")
    items = page.locator("#consumption-items tbody tr")
    await expect(items).to_have_count(2)
    # The institution as the SMS name it: its registered name when settlement's answer carries it
    # (institution_name), else its code.
    listed = await counter.http.get(f"/v1/grantors/{son['person_id']}/consumption", headers=auth(WINDOW))
    shown = listed.json()["items"][0].get("institution_name") or HOSPITAL
    await expect(items.first.locator("td").nth(2)).to_have_text(shown)
    await counter.shot("consumption")

    await page.get_by_role("button", name="打印").click()
    await expect(page.locator("body")).to_have_attribute("data-printed", "yes")
    await page.emulate_media(media="print")
    await expect(page.locator("nav")).to_be_hidden()
    await expect(page.locator("#consumption-form")).to_be_hidden()
    await expect(page.locator("#print-head")).to_contain_text("家庭共济消费明细")
    await expect(page.locator("#print-head")).to_contain_text("clerk-bj-0001")
    await expect(page.locator("#consumption-items")).to_be_visible()
    await counter.shot("consumption-print")
    await page.emulate_media(media="screen")


async def test_the_consumption_list_names_the_institution_by_its_registered_name_when_told_it(counter):
    """The page shows `institution_name` when the API's item carries it. The answer is the real
    gateway's, with the name added on its way to the page wherever settlement did not give it."""
    page = counter.page
    await counter.hospital()
    son = await counter.person(balance="500.00")
    father = await counter.person(region=ELSEWHERE, scheme="resident")
    await counter.bind(son, father)
    await counter.settle(father, 1230)

    seen: list[str] = []

    async def named(route):
        response = await route.fetch()
        view = await response.json()
        for item in view["items"]:
            item["institution_name"] = item.get("institution_name") or "宝鸡测试医院"
        seen.append(route.request.url)
        await route.fulfill(status=response.status, headers=response.headers, body=json.dumps(view))
    await page.route(re.compile(r"/v1/grantors/[^/?]+/consumption\?"), named)
    await counter.open(WINDOW)
    await counter.look_up(son, name=son["name"])
    await page.get_by_role("button", name="查询此人的共济消费").click()
    row = page.locator("#consumption-items tbody tr")
    await expect(row).to_have_count(1)
    assert seen, "the consumption answer passed through the test's route"
    await expect(row.locator("td").nth(2)).to_have_text("宝鸡测试医院")


async def test_a_balance_the_bureau_drove_below_zero_shows_its_minus_and_that_it_pays_nothing(counter):
    page = counter.page
    son = await counter.person(balance="20.00")
    await counter.bus.send(t.BUREAU_ACCOUNTS, seal("AccountDebitedLocally", {
        "person_id": son["person_id"], "region": REGION, "amount": "60.00", "bureau_seq": 1}), key=son["person_id"])
    await eventually(lambda: _balance_is(counter, son, -4_000), 30, "the bureau's own debit in settlement's cache")
    r = await counter.http.post("/v1/person-lookups", json={"id_number": son["person_id"], "name": son["name"]},
                                headers=auth(WINDOW))
    assert r.status_code == 200 and r.json()["balance"] == "-40.00", r.json()   # the gateway's view: as is

    await counter.open(WINDOW)
    await counter.look_up(son, name=son["name"])
    balance = page.locator("#lookup-facts dd.negative")
    await expect(balance).to_contain_text("-40.00 元")
    await expect(balance).to_contain_text("余额为负")
    await page.locator("#lang").click()
    await expect(balance).to_contain_text("-¥40.00")
    await counter.shot("balance-negative")


async def _balance_is(counter, person, fen: int) -> bool:
    return (await cached_balances(counter.redis, [person["person_id"]]))[person["person_id"]] == fen


async def test_the_audit_list_shows_a_clerk_his_own_actions_and_a_supervisor_the_regions(counter):
    page = counter.page
    suffix = uuid.uuid4().hex[:6]
    alice, bob = f"clerk-a-{suffix}", f"clerk-b-{suffix}"
    someone = await counter.person()
    for clerk in (alice, bob):
        r = await counter.http.post("/v1/person-lookups", json={"id_number": someone["person_id"], "name": None},
                                    headers=auth(window(clerk)))
        assert r.status_code == 200, r.json()
    r = await counter.http.get(f"/v1/persons/{someone['person_id']}/bindings", headers=auth(window(alice)))
    assert r.status_code == 200

    await counter.open(window(alice))
    await counter.tab("操作记录")
    await expect(page.locator("#audit-scope")).to_contain_text(alice)
    rows = page.locator("#audit-list tbody tr")
    await expect(rows).to_have_count(2)        # the list refreshes itself while the projection catches up
    await expect(rows.filter(has_text="查询参保人")).to_have_count(1)
    await expect(rows.filter(has_text="查询共济关系")).to_have_count(1)
    await expect(rows.filter(has_text=bob)).to_have_count(0)
    await expect(rows.first).to_contain_text(mask_id_number(someone["person_id"]))
    await counter.shot("audit-window")

    await page.get_by_role("button", name="退出登录").click()
    await counter.sign_in(window(f"sup-{suffix}", role="supervisor"))
    await expect(page.locator("#who-role")).to_have_text("主管")
    await counter.tab("操作记录")
    await expect(page.locator("#audit-scope")).to_contain_text(REGION_ZH)
    await expect(rows.filter(has_text=alice)).to_have_count(2)
    await expect(rows.filter(has_text=bob)).to_have_count(1)
    await counter.shot("audit-supervisor")
    await page.get_by_label("经办人编号（选填）").fill(bob)
    await page.get_by_label("经办人编号（选填）").press("Enter")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text(bob)


async def test_a_token_that_expires_mid_session_returns_the_clerk_to_sign_in(counter):
    page = counter.page
    brief = window("clerk-bj-0002", ttl_seconds=10)
    await counter.open(brief)
    await expect(page.locator("#who")).to_contain_text("clerk-bj-0002")
    await counter.tab("操作记录")   # refreshes itself: the first answer after the expiry is 401
    await expect(page.locator("#signin-token-error")).to_contain_text("登录已过期")
    await expect(page.locator("nav")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_the_grantor_looked_up_limits_pauses_and_resumes_a_binding_each_confirmed(counter):
    page = counter.page
    son = await counter.person()
    father = await counter.person(region=ELSEWHERE, scheme="resident")
    binding = await counter.bind(son, father)
    await counter.open(WINDOW)
    await counter.look_up(son, name=son["name"])
    row = counter.row(binding)
    await expect(row.locator("td").nth(6)).to_have_text("不限")

    await row.get_by_role("button", name="限额").click()
    dialog = page.locator("#limit-dialog")
    await expect(dialog).to_contain_text(binding)
    await expect(page.locator("#limit-amount")).to_be_focused()
    await page.keyboard.type("12.345")            # the keyboard alone: Enter confirms
    await page.keyboard.press("Enter")
    await expect(page.locator("#limit-amount-error")).to_contain_text("最多两位小数")
    # The bounds come from the platform's catalogue (shared/limits.py), not from a copy in the page.
    await expect(page.locator("#limit-amount-hint")).to_contain_text("0.00 至 1000000.00 元")
    await page.locator("#limit-amount").fill("1000000.01")
    await page.keyboard.press("Enter")
    await expect(page.locator("#limit-amount-error")).to_contain_text("0.00 至 1000000.00")
    await page.locator("#limit-amount").fill("500")
    await counter.shot("limit-set")
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(row.locator("td").nth(6)).to_have_text("500.00 元")
    await expect(page.locator("#status")).to_contain_text("每月限额已设为 500.00 元")
    [sent] = await counter.bus.watchers[t.BINDING_COMMANDS].wait_for(
        lambda r: body(r)["event_type"] == "SetGrantorLimit" and payload_of(r).get("binding_id") == binding)
    assert payload_of(sent) | {"command_id": None} == {
        "binding_id": binding, "monthly_limit": "500.00", "requested_by": son["person_id"], "channel": "window",
        "clerk_id": "clerk-bj-0001", "command_id": None}

    await row.get_by_role("button", name="暂停").click()
    pause = page.locator("#pause-dialog")
    await expect(pause).to_contain_text("暂停后，授权者的个人账户不再为使用者支付")
    await expect(page.locator("#pause-cancel")).to_be_focused()   # the safe choice has the focus
    await page.keyboard.press("Escape")
    await expect(pause).to_be_hidden()
    await expect(row).to_contain_text("有效")
    await row.get_by_role("button", name="暂停").click()
    await counter.shot("pause-confirm")
    await page.get_by_role("button", name="确认暂停").click()
    await expect(pause).to_be_hidden()
    await expect(row.locator("td").nth(5)).to_have_text("已暂停")
    await expect(page.locator("#status")).to_contain_text(f"绑定 {binding} 已暂停")
    await counter.shot("paused")

    await row.get_by_role("button", name="恢复").click()
    await expect(pause).to_contain_text("恢复后")
    await page.get_by_role("button", name="确认恢复").click()
    await expect(row.locator("td").nth(5)).to_have_text("有效")
    await row.get_by_role("button", name="限额").click()
    await page.get_by_role("button", name="取消限额（不限）").click()
    await expect(dialog).to_be_hidden()
    await expect(row.locator("td").nth(6)).to_have_text("不限")

    # From the beneficiary's side only the grantor's own decisions are missing.
    await counter.look_up(father)
    await expect(counter.row(binding).get_by_role("button", name="暂停")).to_have_count(0)
    await expect(counter.row(binding).get_by_role("button", name="限额")).to_have_count(0)

    await counter.tab("操作记录")
    rows = page.locator("#audit-list tbody tr")
    await expect(rows.filter(has_text="设置限额")).to_have_count(2)
    await expect(rows.filter(has_text="暂停共济")).to_have_count(1)
    await expect(rows.filter(has_text="恢复共济")).to_have_count(1)


async def test_a_dispute_by_the_sms_reference_pauses_the_binding_and_is_listed_with_the_grantors(counter):
    page = counter.page
    await counter.hospital()
    son = await counter.person(balance="200.00")
    father = await counter.person(region=ELSEWHERE, scheme="resident")
    binding = await counter.bind(son, father)
    charge = await counter.settle(father, 2345)
    reference = payment_reference(HOSPITAL, charge["charge_id"], son["person_id"])

    await counter.open(WINDOW)
    await counter.look_up(son, name=son["name"])
    await page.get_by_role("button", name="此人的非本人授权争议").click()
    await expect(page.get_by_role("heading", name="非本人授权争议")).to_be_visible()
    await expect(page.locator("#dispute-grantor")).to_have_value(son["person_id"])
    await expect(page.locator("#disputes-none")).to_be_visible()

    await page.locator("#dispute-reference").fill("7K2P")                       # caught on the page
    await page.locator("#dispute-reference").press("Enter")
    await expect(page.locator("#dispute-reference-error")).to_contain_text("8位字母数字")
    unknown = payment_reference(HOSPITAL, "C-never-charged", son["person_id"])
    await page.locator("#dispute-reference").fill(unknown)                      # refused by the platform
    await page.locator("#dispute-reference").press("Enter")
    await expect(page.locator("#dispute-reference-error")).not_to_be_empty()
    await expect(page.locator("#dispute-reference")).to_have_attribute("aria-invalid", "true")
    await counter.shot("dispute-unknown-reference")

    await page.locator("#dispute-reference").fill(f"bf {reference.lower()}")   # as the SMS reply form
    await page.get_by_role("button", name="提交争议并暂停").click()
    result = page.locator("#dispute-result")
    await expect(result).to_contain_text("争议已受理")
    await expect(result).to_contain_text(f"绑定 {binding} 已暂停")
    await expect(result).to_contain_text("23.45")
    listed = page.locator("#disputes-list tbody tr")
    await expect(listed).to_have_count(1)
    await expect(listed).to_contain_text(reference)
    await expect(listed).to_contain_text("核查中")
    await expect(listed).to_contain_text(mask_id_number(father["person_id"]))
    await counter.shot("dispute-opened")
    [sent] = await counter.bus.watchers[t.BINDING_COMMANDS].wait_for(
        lambda r: body(r)["event_type"] == "DisputePayment" and payload_of(r).get("reference") == reference)
    assert (payload_of(sent)["requested_by"], payload_of(sent)["channel"]) == (son["person_id"], "window")

    await page.get_by_role("button", name="English").click()
    await expect(page.get_by_role("heading", name="Payments disputed as not authorised")).to_be_visible()
    await expect(listed).to_contain_text("being checked")
    await counter.shot("dispute-opened-english")
    await page.get_by_role("button", name="中文").click()

    await counter.look_up(son, name=son["name"])
    await expect(counter.row(binding).locator("td").nth(5)).to_have_text("已暂停")
    await counter.row(binding).get_by_role("button", name="恢复").click()
    await page.get_by_role("button", name="确认恢复").click()
    await expect(page.locator("#pause-error")).not_to_be_empty()             # DISPUTE_OPEN, in the platform's words
    await expect(page.locator("#pause-dialog")).to_be_visible()
    await page.keyboard.press("Escape")

    # The grantor's bureau dismisses the dispute: the list says so, and the binding can be resumed.
    [opened] = await counter.bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: body(r)["event_type"] == "DisputeOpened" and payload_of(r).get("reference") == reference)
    dispute_id = payload_of(opened)["dispute_id"]
    decided = {"dispute_id": dispute_id, "region": son["region"], "decision": "dismissed",
               "decided_at": now().isoformat(timespec="seconds")}
    await counter.bus.send(t.BUREAU_DISPUTES, seal("DisputeDecided", decided), key=dispute_id)
    await counter.bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: body(r)["event_type"] == "DisputeResolved" and payload_of(r).get("dispute_id") == dispute_id)
    await page.get_by_role("button", name="此人的非本人授权争议").click()
    await expect(listed).to_contain_text("驳回（可恢复）")
    await expect(page.locator("#dispute-result")).to_be_hidden()   # the receipt was for the earlier visit
    await counter.shot("dispute-dismissed")
    await counter.look_up(son, name=son["name"])
    await counter.row(binding).get_by_role("button", name="恢复").click()
    await page.get_by_role("button", name="确认恢复").click()
    await expect(page.locator("#pause-dialog")).to_be_hidden()
    await expect(counter.row(binding).locator("td").nth(5)).to_have_text("有效")


async def test_the_openapi_page_renders_with_nothing_from_outside_under_the_consoles_policy(counter):
    """/docs in the browser with every request off this origin refused: Swagger UI comes from the
    gateway itself, and its policy (the console's) blocks nothing the page needs."""
    page, outside = counter.page, []

    async def only_this_origin(route):
        if route.request.url.startswith(counter.url):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()
    await page.route("**/*", only_this_origin)
    response = await page.goto(f"{counter.url}/docs")
    assert response.status == 200 and "script-src 'self'" in response.headers["content-security-policy"]
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Family mutual aid API")
    await expect(page.locator(".opblock-summary-path", has_text="/v1/person-lookups")).to_be_visible()
    await counter.shot("openapi-page")
    assert outside == []
