from hypothesis import given
from hypothesis import strategies as st

from telegram_bridge.telegram_html import escape, split_message, telegram_html_errors, visible_text


def test_errors_like_telegram():
    assert telegram_html_errors("<b>ok</b> &amp; <a href=\"x\">link</a>") is None
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
