"""Celery tasks of the analytics app: thin wrappers around services (default queue)."""

from celery import shared_task

from analytics import services
from analytics.services import heartbeat_record


@shared_task(name="analytics.tasks.heartbeat", time_limit=30)
def heartbeat() -> str:
    """Proves beat, broker, worker and database work together; /readyz reads its age."""
    return heartbeat_record(name="worker").beat_at.isoformat()


@shared_task(name="analytics.tasks.analytics_snapshot", time_limit=300)
def analytics_snapshot() -> str:
    """Daily (beat): freeze the analytics of the day; also fails backtests whose worker died."""
    services.backtest_runs_fail_stale()
    return str(services.analytics_snapshot_create().day)


@shared_task(name="analytics.tasks.backtest_run", time_limit=3600, soft_time_limit=3500)
def backtest_run(*, run_id: int) -> str:
    return services.backtest_run_execute(run_id=run_id).status


@shared_task(name="analytics.tasks.broadcast_fanout", time_limit=600)
def broadcast_fanout(*, broadcast_id: str, text: str) -> int:
    return services.broadcast_publish(broadcast_id=broadcast_id, text=text)


@shared_task(name="analytics.tasks.watchdog", time_limit=60, soft_time_limit=50, ignore_result=True)
def watchdog() -> dict:
    """Every minute (beat): stale heartbeat or missed scan → re-queue it and tell the admins."""
    from analytics.watchdog import watchdog_check

    report = watchdog_check()
    return {"healthy": report.healthy, "requeued": report.requeued, "admins_told": report.admins_told}
