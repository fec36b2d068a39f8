"""How `make run` shows the platform: a rich live view on a terminal, a plain status line
otherwise (CI, `make run > file`), and the summary at the end."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from shared.money import format_yuan
from tooling.launch.metrics import Figures

SOURCES = (("own", "own accounts 个账"), ("grantor", "grantors 共济"), ("cash", "cash 现金"))


def yuan(fen: int) -> str:
    text = format_yuan(fen)
    whole, _, cents = text.partition(".")
    return f"¥{int(whole):,}.{cents}"


def _reasons(counter, limit: int = 6) -> str:
    items = counter.most_common(limit)
    return ", ".join(f"{k} {v:,}" for k, v in items) or "none"


def _lag(f: Figures) -> str:
    if not f.lag:
        return "not served"
    return ", ".join(f"{svc} {int(sum(topics.values())):,}" for svc, topics in sorted(f.lag.items()))


def _bureau(f: Figures) -> str:
    b = f.bureau_sent
    return (f"credits {b.get('credit', 0):,}, local debits {b.get('local_debit', 0):,}, snapshots "
            f"{b.get('snapshot', 0):,} sent; {f.bureau_refused:,} refused")


def _counts(counter) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items())) or "none"


def _beyond(f: Figures) -> list[tuple[str, str]]:
    """Holds, limits, disputes and reconciliation, as the simulator saw them."""
    return [("quotes 预结算", _counts(f.quotes)),
            ("limits & pauses 限额/暂停", _counts(f.binding_changes)),
            ("disputes 非本人授权", _counts(f.disputes)),
            ("HIS reconciliation 对账", _counts(f.reconciled) + (f"; account drift {f.drift:,}" if f.drift else ""))]


def _mark(f: Figures, what: str) -> str:
    return " (simulator's count)" if what in f.from_simulator else ""


def live(f: Figures, elapsed: float, header: list[str], note: str) -> Group:
    """The live view: the figures, then the URLs and tokens printed at start."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column()
    t.add_row("charges/s", f"{f.per_second:,.1f}")
    t.add_row("settled 已结算", f"{f.settled:,}{_mark(f, 'charges')}")
    t.add_row("refused 拒付", f"{sum(f.refused.values()):,}: {_reasons(f.refused)}")
    for key, label in SOURCES:
        t.add_row(f"paid from {label}", yuan(f.paid_fen.get(key, 0)) + _mark(f, "paid"))
    t.add_row("cross-region 跨统筹区", f"{f.cross_region:,} payments, {f.cross_share:.0%} of settled charges"
              + _mark(f, "cross"))
    t.add_row("refunds 退费", ", ".join(f"{k} {v:,}" for k, v in sorted(f.refunds.items())) or "none")
    t.add_row("SMS 短信", f"sent {f.sms.get('sent', 0):,}, failed {f.sms.get('failed', 0):,}"
              + (f", unknown {f.sms['unknown']:,}" if f.sms.get("unknown") else "") + _mark(f, "sms"))
    t.add_row("bindings 绑定", ", ".join(f"{k} {v:,}" for k, v in sorted(f.bindings.items())) or "none")
    t.add_row("bureau events 医保局", _bureau(f))
    for label, text in _beyond(f):
        t.add_row(label, text)
    t.add_row("consumer lag", _lag(f))
    for i, sms in enumerate(reversed(f.recent_sms)):
        t.add_row("latest SMS 最新短信" if i == 0 else "", sms_line(sms))
    if f.down:
        t.add_row(Text("ended", style="bold red"), Text(", ".join(f.down) + " (see its log)", style="red"))
    title = f"Shaanxi family mutual aid · running {elapsed:,.0f} s" + (f" · simulator {f.phase}" if f.phase else "")
    # a token folded over two lines would be copied with a line break in it: the view shows its
    # start only; the whole one is printed above the view and kept in the tokens file
    shown = [f"{h[:44]}… (whole above)" if h.startswith("    eyJ") else h for h in header]
    return Group(Panel(t, title=title, title_align="left"),
                 Text("\n".join(shown), no_wrap=True, overflow="ellipsis"), Text(note, style="dim"))


def sms_line(sms: dict) -> str:
    """One SmsSent: when, to whom (masked), which text, about what."""
    about = f"binding {sms['binding_id']}" if sms.get("binding_id") else f"charge {sms.get('charge_id', '')}"
    return (f"{sms.get('sent_at', '')[11:19]} → {sms.get('phone', '')} ({sms.get('recipient_role', '')}) "
            f"{sms.get('template', '')}, {about}")


def line(f: Figures, elapsed: float) -> str:
    """The plain one-line status."""
    paid = " ".join(f"{k} {yuan(f.paid_fen.get(k, 0))}" for k, _ in SOURCES)
    return (f"[{elapsed:5.0f} s] charges {f.charges:,} ({f.per_second:.1f}/s): settled {f.settled:,}, refused "
            f"{sum(f.refused.values()):,} ({_reasons(f.refused, 3)}); paid {paid}; cross-region "
            f"{f.cross_share:.0%}; SMS sent {f.sms.get('sent', 0):,} failed {f.sms.get('failed', 0):,}; lag {_lag(f)}"
            + f"; quotes {f.quotes.get('quoted', 0):,}, disputes {f.disputes.get('opened', 0):,}, "
              f"HIS reconciliations {sum(f.reconciled.values()):,}"
            + (f"; latest SMS {sms_line(f.recent_sms[-1])}" if f.recent_sms else "")
            + (f"; ENDED: {', '.join(f.down)}" if f.down else ""))


def summary(f: Figures, elapsed: float) -> list[str]:
    refused = sum(f.refused.values())
    return [
        f"  ran {elapsed:.1f} s",
        f"  charges: {f.settled:,} settled, {refused:,} refused"
        + (f" ({_reasons(f.refused, 20)})" if refused else "") + _mark(f, "charges"),
        "  paid: " + ", ".join(f"{label} {yuan(f.paid_fen.get(k, 0))}" for k, label in SOURCES) + _mark(f, "paid"),
        f"  cross-region payments: {f.cross_region:,} ({f.cross_share:.0%} of settled charges)" + _mark(f, "cross"),
        "  refunds: " + (", ".join(f"{k} {v:,}" for k, v in sorted(f.refunds.items())) or "none"),
        f"  SMS: {f.sms.get('sent', 0):,} sent, {f.sms.get('failed', 0):,} failed"
        + (f", {f.sms['unknown']:,} outcome unknown" if f.sms.get("unknown") else "") + _mark(f, "sms"),
        "  bindings: " + (", ".join(f"{k} {v:,}" for k, v in sorted(f.bindings.items())) or "none"),
        f"  bureau events: {_bureau(f)}",
    ] + [f"  {label}: {text}" for label, text in _beyond(f)]
