"""The Cloud Scheduler jobs the console may change (the backup's and the cleanup's), through
google-cloud-scheduler, the one module that imports it. Only ``schedule`` and ``time_zone`` are
read and written (an update mask of those two): the jobs' targets, tokens and retries stay as
Terraform made them. REST transport, so ``SCHEDULER_ENDPOINT`` can point it at a local fake."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from dbbackup.core.ports import JobSchedule
from dbbackup.errors import SchedulerError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
TIMEOUT_SECONDS = 30


class CloudSchedulerJobs:
    """``core.ports.SchedulerJobs`` over Cloud Scheduler, jobs named ``projects/P/locations/L/jobs/J``.
    With a loopback ``endpoint`` (a fake) it sends no credentials; otherwise the function's own
    identity (Application Default Credentials), which may update these two jobs and no more."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint

    def _client(self) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.cloud import scheduler_v1

        options = ClientOptions(api_endpoint=self.endpoint) if self.endpoint else None
        credentials = None
        if self.endpoint and urlsplit(self.endpoint).hostname in _LOOPBACK:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
        return scheduler_v1.CloudSchedulerClient(credentials=credentials, transport="rest", client_options=options)

    def get(self, name: str) -> JobSchedule:
        job = self._call("read", name, lambda client: client.get_job(name=name, timeout=TIMEOUT_SECONDS))
        return JobSchedule(str(job.schedule), str(job.time_zone))

    def update(self, name: str, schedule: JobSchedule) -> JobSchedule:
        def patch(client: Any) -> Any:
            job = {"name": name, "schedule": schedule.cron, "time_zone": schedule.time_zone}
            request = {"job": job, "update_mask": {"paths": ["schedule", "time_zone"]}}
            return client.update_job(request=request, timeout=TIMEOUT_SECONDS)

        job = self._call("update", name, patch)
        return JobSchedule(str(job.schedule), str(job.time_zone))

    def _call(self, verb: str, name: str, call: Callable[[Any], Any]) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return call(self._client())
        except gexc.GoogleAPICallError as exc:
            # The status names what to fix (PermissionDenied: the runtime account's role; NotFound:
            # the job's name); the message is Google's own, never a secret, cut to one line.
            # The REST transport puts "GET <url>: " before Google's message; the URL says nothing new.
            message = re.sub(r"^[A-Z]+ \S+: ", "", " ".join(str(exc.message or "").split()))[:200]
            raise SchedulerError(f"Cloud Scheduler: could not {verb} {name}: {type(exc).__name__}: {message}") from None
        except Exception as exc:  # credentials missing, transport errors: one line, no traceback
            raise SchedulerError(f"Cloud Scheduler: could not {verb} {name}: {type(exc).__name__}") from None
