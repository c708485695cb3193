from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from telegram_bridge import texts
from telegram_bridge.telegram_html import escape, split_message, telegram_html_errors, visible_text


def test_errors_like_telegram():
    assert telegram_html_errors('<b>ok</b> &amp; <a href="x">link</a>') is None
    assert "Unsupported start tag" in telegram_html_errors("<script>x</script>")
    assert "end tag" in telegram_html_errors("<b>open")
    assert "unescaped" in telegram_html_errors("a < b")


@given(st.text(max_size=300))
def test_escaped_user_text_always_parses_and_reads_back(text):
    assert telegram_html_errors(f"<b>{escape(text)}</b>") is None
    assert visible_text(f"<b>{escape(text)}</b>") == text


@given(st.text(min_size=1, max_size=200), st.integers(min_value=1, max_value=60))
def test_split_keeps_every_part_valid_and_within_the_limit(text, repeat):
    html = "<b>Title</b>\n" + "\n".join(f"<i>{escape(text)}</i> {i}" for i in range(repeat * 5))
    parts = split_message(html, limit=500)
    assert all(len(p) <= 500 and telegram_html_errors(p) is None for p in parts)
    assert "".join(visible_text(p) for p in parts).replace("\n", "") == visible_text(html).replace("\n", "")


def test_pnl_summary_rounds_average_r_and_names_the_period():
    from types import SimpleNamespace

    summary = SimpleNamespace(
        period="all",
        trades=3,
        wins=1,
        losses=2,
        win_rate=Decimal("0.3333"),
        realised=Decimal("-12.5"),
        unrealised=Decimal("0"),
        fees=Decimal("1.25"),
        funding=Decimal("-0.1"),
        net=Decimal("-13.65"),
        average_r=Decimal("-0.3754730359667659595112711341"),
        best=Decimal("4"),
        worst=Decimal("-9.5"),
    )
    text = texts.pnl_summary(summary)
    assert "<b>PnL — all time</b>" in text
    assert "Average R: -0.38 " in text and "33.3%" in text and "Net: -13.65 USDT" in text
    assert "Average R: —" in texts.pnl_summary(SimpleNamespace(**{**vars(summary), "average_r": None}))
