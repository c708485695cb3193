"""`make demo SERVE=0` end to end, as a user runs it: a fresh SQLite file, no Redis, no broker.

The same run checks that no configured secret reaches the output or the logs (DEBUG level, everything captured).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "TELEGRAM_BOT_TOKEN": "987654321:AAH-demo-secret-token-value-xyz",
    "OPENAI_API_KEY": "sk-demo-openai-secret-0123456789",
    "CRYPTONEWS_API_KEY": "cryptonews-demo-secret-abcdef",
    "WHOP_WEBHOOK_SECRET": "whsec_ZGVtby13aG9wLXNlY3JldA==",
    "HELIUS_AUTH_TOKEN": "helius-demo-secret-auth-token",
    "TELEGRAM_WEBHOOK_SECRET": "telegram-webhook-demo-secret",
}


CAPABILITIES = (
    "technical signals",
    "news signals",
    "news articles processed",
    "funding alerts",
    "order-flow alerts",
    "auto flips",
    "risk pauses",
    "live trades on Bitunix",
    "backtests",
    "subscriptions bought in the bot",
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_the_whole_pipeline_and_leaks_no_secret(tmp_path):
    fernet_key = Fernet.generate_key().decode()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(
        SECRETS,
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        FERNET_KEYS=fernet_key,
        LOG_LEVEL="DEBUG",
        MEDIA_ROOT=str(tmp_path / "media"),
    )
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr
    run = subprocess.run(
        [sys.executable, "manage.py", "demo", "--serve=0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]

    # every stage printed its part
    for heading in ("Signals", "Paper and live trades", "PnL per user", "Telegram", "Capabilities shown"):
        assert f"\n{heading}" in run.stdout
    signals = int(re.search(r"scan\(s\), (\d+) signal\(s\)", run.stdout).group(1))
    assert signals >= 5
    assert re.search(r"@alice_demo\s+(\d+)\s+\d+", run.stdout), "alice has a PnL row"
    trades = int(re.search(r"@alice_demo\s+(\d+)\s+\d+", run.stdout).group(1))
    assert trades >= 5
    bot_says = re.search(r"@alice_demo: .*?Trades: (\d+)", run.stdout)
    assert bot_says and int(bot_says.group(1)) == trades, "the bot's /pnl all agrees with the PnL table"
    delivered = int(re.search(r"(\d+) messages delivered through the Bot API", run.stdout).group(1))
    assert delivered >= signals  # at least the broadcast of every signal reached someone
    assert "Dashboard login: user 'demo'" in run.stdout

    # every capability happened at least once, reached through the bot, and was seen in Telegram
    for capability in CAPABILITIES:
        line = re.search(rf"^  {re.escape(capability)}\s+(\d+)  (.*)$", run.stdout, re.MULTILINE)
        assert line, f"{capability!r} missing from the summary"
        assert int(line.group(1)) > 0, f"{capability}: {line.group(0)}"
    articles = re.search(r"news articles processed\s+(\d+)\s+of (\d+) fetched; decisions (\{.*\})", run.stdout)
    assert articles and articles.group(1) == articles.group(2) == "8", articles and articles.group(0)
    for decision in ("duplicate", "weak", "no_symbol", "signal"):  # re-post, neutral story, not a perpetual
        assert f"'{decision}'" in articles.group(3)
    # the headline with markup and an entity reached Telegram as plain text (escaped, not rejected)
    assert re.search(
        r"news articles processed.*in Telegram: Exchange delists several XRP pairs & halts deposits", run.stdout
    )
    flow = re.search(r"order-flow alerts\s+\d+\s+exchanges agreeing \[(.*?)\]", run.stdout)
    assert flow and len(flow.group(1).split(",")) >= 2, "flow_agreeing reflects several exchanges"
    funding = re.search(r"funding alerts\s+\d+\s+venues \[(.*?)\]", run.stdout)
    assert funding and len(funding.group(1).split(",")) >= 2, "a funding alert compares two exchanges"
    assert re.search(r"risk pauses\s+\d+\s+.*resumed through /resume [1-9]", run.stdout)
    assert re.search(r"live trades on Bitunix\s+\d+\s+[1-9]\d* stop/take-profit order", run.stdout)
    assert re.search(r"backtests\s+\d+\s+run #\d+ succeeded; equity-curve image sent to the admin: 1", run.stdout)
    assert re.search(r"subscriptions bought in the bot\s+2\s+@alice_demo paid, @carol_demo paid", run.stdout)

    # nothing secret anywhere in what the run printed or logged (the Fernet key included)
    for name, value in [*SECRETS.items(), ("FERNET_KEYS", fernet_key)]:
        assert value not in output, f"{name} leaked into the demo output"
    assert "Traceback" not in output
