"""The Celery application: configured from Django settings (CELERY_* names), tasks discovered in every app."""

import os

from celery import Celery, signals
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("perps")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("scan", "trade", "telegram", "default")]
app.autodiscover_tasks()


@signals.task_prerun.connect
def _bind_task_id(task_id=None, **_):
    from config.observability import task_id_var

    task_id_var.set(task_id or "-")


@signals.task_postrun.connect
def _unbind_task_id(**_):
    from config.observability import task_id_var

    task_id_var.set("-")


@signals.task_failure.connect
def _report_task_failure(sender=None, task_id=None, exception=None, **_):
    from config.observability import error_report

    if exception is not None:
        error_report(exception, kind="task", context={"task": getattr(sender, "name", "?"), "celery_task_id": task_id})


# Tasks that live outside the apps' tasks modules.
app.conf.imports = ("config.live_updates",)
