"""Settings of the processes the fan-out fault tests start (config/tests/fault_stack.py): the production settings —
the broker's visibility timeout included, so a recovery never leans on the broker's redelivery — with only the beat
entries of the sweepers that recover lost work, at their production intervals, on a file-based beat scheduler."""

from config.settings import *  # noqa: F403
from config.settings import CELERY_BEAT_SCHEDULE

SWEEPERS = ("publish-pending-signals", "execution-intents-sweep", "telegram-resend-stale", "events-outbox-sweep")
CELERY_BEAT_SCHEDULE = {name: entry for name, entry in CELERY_BEAT_SCHEDULE.items() if name in SWEEPERS}
CELERY_BEAT_SCHEDULER = "celery.beat:PersistentScheduler"
