"""Who exists in the simulated province: designated institutions in several cities, employees
with balances, residents, and families whose bindings the grantors make in the app.

Pure and deterministic: the same seed, size and day draw the same province, so `make run` can
mint a token for a seeded grantor without asking the simulator process. Every person is
fictional: names are drawn from common surnames and given-name characters, phones from mobile
prefixes, ID numbers are valid (check digit, real birth date) but belong to nobody known.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from shared.envelope import china_today
from shared.identity import make_id_number
from shared.money import format_yuan
from shared.regions import find_region

XIAN = "610100"
# The cities the province is drawn in (Xi'an first: most grantors work there).
CITIES = ("610100", "610300", "610400", "610500", "610700", "610800")
_DISTRICTS = ("02", "03", "04", "11", "21", "22", "23")
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国文博雅欣怡子涵浩然宇轩梓萱思远晨曦嘉怡俊杰晓东海燕红梅志强春花秋菊玉兰德胜永福"
_MOBILE_PREFIXES = ("134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159",
                    "182", "183", "187", "188", "130", "131", "132", "155", "156", "185", "186",
                    "133", "153", "177", "180", "181", "189", "199")
_FIRMS = ("秦川", "长安", "华岳", "渭水", "汉唐", "丝路", "曲江", "终南", "泾河", "古城")
_TRADES = ("科技有限公司", "机械制造有限公司", "建设工程有限公司", "商贸有限公司", "软件有限公司",
           "食品有限公司", "物流有限公司", "电子有限公司")
_COMMUNITIES = ("幸福里", "和平路", "安居苑", "朝阳", "东关", "西关", "南街", "北街", "兴庆", "建设路")
_INSTITUTION_WORDS = ("仁和", "康宁", "济民", "惠民", "安泰", "益康", "福瑞", "同心", "永安", "德善")
_KINDS = {"hospital": ("H", "医院"), "clinic": ("C", "诊所"), "pharmacy": ("P", "大药房")}


@dataclass(frozen=True)
class Size:
    families: int          # each with an employee grantor and the relatives he or she binds
    employees: int         # employees on their own, paying from their account
    residents: int         # residents nobody binds: they pay cash
    cities: int            # how many of CITIES have institutions
    per_kind: int          # institutions of each kind in each of those cities


SIZES = {
    "small": Size(families=30, employees=40, residents=20, cities=5, per_kind=1),
    "medium": Size(families=300, employees=400, residents=200, cities=6, per_kind=2),
    "large": Size(families=3000, employees=4000, residents=2000, cities=6, per_kind=4),
}


@dataclass(frozen=True)
class Institution:
    code: str
    name: str
    region: str
    kind: str  # hospital | clinic | pharmacy

    def registered(self, public_keys: list[dict]) -> dict:
        """The InstitutionRegistered payload, with the institution's public keys (contract version 3)."""
        return {"institution_code": self.code, "name": self.name, "region": self.region, "kind": self.kind,
                "public_keys": public_keys}


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    region: str
    scheme: str                    # employee | resident
    phone: str | None
    birth: date
    employer: str | None = None
    community: str | None = None
    balance_fen: int = 0           # employees: the personal account's opening balance

    def registered(self) -> dict:
        """The PersonRegistered payload."""
        p = {"person_id": self.person_id, "name": self.name, "region": self.region, "scheme": self.scheme}
        if self.phone:
            p["phone"] = self.phone
        if self.scheme == "employee":
            return p | {"employer": self.employer, "balance": format_yuan(self.balance_fen)}
        return p | {"community": self.community}

    def party(self) -> dict:
        """The person as a binding form names him or her."""
        p = {"id_number": self.person_id, "name": self.name, "region": self.region}
        p |= {"employer": self.employer} if self.scheme == "employee" else {"community": self.community}
        return p | ({"phone": self.phone} if self.phone else {})

    def age(self, on: date) -> int:
        return on.year - self.birth.year - ((on.month, on.day) < (self.birth.month, self.birth.day))


@dataclass(frozen=True)
class Binding:
    grantor: Person
    beneficiary: Person
    relation: str       # what the beneficiary is to the grantor: father, mother, spouse, child
    payment_order: int

    @property
    def cross_region(self) -> bool:
        return self.grantor.region != self.beneficiary.region

    def form(self, start: date, days: int = 365) -> dict:
        """The app's CreateBinding form, less `channel` (the gateway sets it from the token)."""
        commitment = f"个人承诺书|{self.grantor.person_id}|{self.beneficiary.person_id}|{self.relation}"
        return {"grantor": self.grantor.party(), "beneficiary": self.beneficiary.party(),
                "relation": self.relation, "payment_order": self.payment_order,
                "start_date": start.isoformat(), "end_date": (start + timedelta(days=days)).isoformat(),
                "notice_accepted": True,
                "signature_digest": "sha256:" + hashlib.sha256(commitment.encode()).hexdigest()}


@dataclass
class Province:
    institutions: list[Institution]
    people: list[Person]
    bindings: list[Binding]
    unbound_residents: list[Person] = field(default_factory=list)

    def employees(self) -> list[Person]:
        return [p for p in self.people if p.scheme == "employee"]

    def beneficiaries(self) -> list[Person]:
        seen: dict[str, Person] = {}
        for b in self.bindings:
            seen.setdefault(b.beneficiary.person_id, b.beneficiary)
        return list(seen.values())

    def grantors_of(self, person_id: str) -> list[Person]:
        return [b.grantor for b in sorted(self.bindings, key=lambda b: b.payment_order)
                if b.beneficiary.person_id == person_id]

    def demo_grantor(self) -> Person:
        """A Xi'an grantor with a beneficiary in another city: the app token `make run` prints."""
        for b in self.bindings:
            if b.grantor.region == XIAN and b.cross_region:
                return b.grantor
        return self.bindings[0].grantor


class _Drawer:
    """Draws people with distinct ID numbers from one random stream."""

    def __init__(self, rng: random.Random, today: date) -> None:
        self.rng, self.today = rng, today
        self._ids: set[str] = set()

    def name(self, surname: str | None = None) -> str:
        given = "".join(self.rng.choice(_GIVEN) for _ in range(self.rng.choice((1, 2, 2))))
        return (surname or self.rng.choice(_SURNAMES)) + given

    def phone(self) -> str:
        return self.rng.choice(_MOBILE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"

    def person_id(self, region: str, age: int) -> tuple[str, date]:
        while True:
            born = self.today - timedelta(days=365 * age + self.rng.randrange(365))
            pid = make_id_number(region[:4] + self.rng.choice(_DISTRICTS), born, self.rng.randrange(1000))
            if pid not in self._ids:
                self._ids.add(pid)
                return pid, born

    def employee(self, region: str, age: int, balance_fen: int, surname: str | None = None) -> Person:
        pid, born = self.person_id(region, age)
        city = find_region(region).name_zh.removesuffix("市")
        employer = f"{city}{self.rng.choice(_FIRMS)}{self.rng.choice(_TRADES)}"
        return Person(pid, self.name(surname), region, "employee", self.phone(), born, employer=employer,
                      balance_fen=balance_fen)

    def resident(self, region: str, age: int, surname: str | None = None, phone: bool = True) -> Person:
        pid, born = self.person_id(region, age)
        city = find_region(region).name_zh.removesuffix("市")
        community = f"{city}{self.rng.choice(_COMMUNITIES)}社区"
        return Person(pid, self.name(surname), region, "resident", self.phone() if phone else None, born,
                      community=community)

    def balance(self) -> int:
        # a fifth of the accounts run low, so grantors' second orders and cash are seen too
        if self.rng.random() < 0.2:
            return self.rng.randrange(2_000, 30_000)
        return self.rng.randrange(80_000, 1_200_000)


def _institutions(rng: random.Random, size: Size) -> list[Institution]:
    out = []
    for region in CITIES[:size.cities]:
        city = find_region(region).name_zh.removesuffix("市")
        words = rng.sample(_INSTITUTION_WORDS, len(_INSTITUTION_WORDS))
        n = 0
        for kind, (letter, suffix) in _KINDS.items():
            for _ in range(size.per_kind):
                n += 1
                out.append(Institution(f"{letter}{region}{n:03d}", f"{city}{words[n % len(words)]}{suffix}",
                                       region, kind))
    return out


def build_province(size: Size | str = "small", seed: int = 13, today: date | None = None) -> Province:
    """The province for `seed`; `today` (China time) fixes the ages drawn, so tests pass one."""
    size = SIZES[size] if isinstance(size, str) else size
    rng = random.Random(seed)
    draw = _Drawer(rng, today or china_today())
    institutions = _institutions(rng, size)
    people: list[Person] = []
    bindings: list[Binding] = []
    others = [c for c in CITIES if c != XIAN]
    for _ in range(size.families):
        home = XIAN if rng.random() < 0.6 else rng.choice(others)
        grantor = draw.employee(home, rng.randrange(28, 56), draw.balance())
        people.append(grantor)
        spouse = None
        if rng.random() < 0.8:
            if rng.random() < 0.5:
                spouse = draw.employee(home, grantor.age(draw.today) + rng.randrange(-3, 4), draw.balance())
            else:
                spouse = draw.resident(home, grantor.age(draw.today) + rng.randrange(-3, 4))
                bindings.append(Binding(grantor, spouse, "spouse", 1))
            people.append(spouse)
        if rng.random() < 0.7:
            age = rng.randrange(2, max(3, grantor.age(draw.today) - 20))
            child = draw.resident(home, age, surname=grantor.name[0], phone=age >= 16)
            people.append(child)
            bindings.append(Binding(grantor, child, "child", 1))
            if spouse is not None and spouse.scheme == "employee":
                bindings.append(Binding(spouse, child, "child", 2))
        # parents mostly stay in their home town: the cross-region bindings (跨统筹区)
        for relation in rng.sample(("father", "mother"), rng.choice((0, 1, 1, 2))):
            town = rng.choice(others) if rng.random() < 0.7 else home
            age = grantor.age(draw.today) + rng.randrange(24, 32)
            surname = grantor.name[0] if relation == "father" else None
            if rng.random() < 0.3:  # a retired employee with a small account of his or her own
                parent = draw.employee(town, age, rng.randrange(1_000, 20_000), surname=surname)
            else:
                parent = draw.resident(town, age, surname=surname, phone=rng.random() < 0.7)
            people.append(parent)
            bindings.append(Binding(grantor, parent, relation, 1))
    for _ in range(size.employees):
        people.append(draw.employee(rng.choice(CITIES), rng.randrange(22, 60), draw.balance()))
    unbound = [draw.resident(rng.choice(CITIES), rng.randrange(1, 80)) for _ in range(size.residents)]
    people += unbound
    return Province(institutions, people, bindings, unbound)
