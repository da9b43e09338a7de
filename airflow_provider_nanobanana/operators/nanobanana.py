"""NanoBananaGenerateOperator: validate, submit one Nano Banana task, and wait for its images."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowTaskTimeout

from airflow_provider_nanobanana.exceptions import ApixoTaskFailedError
from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from airflow_provider_nanobanana.models import (
    DEFAULT_INITIAL_DELAY,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    NANO_BANANA,
    NanoBananaRequest,
)
from airflow_provider_nanobanana.polling import (
    DEFAULT_MAX_CONSECUTIVE_ERRORS,
    DEFER_TIMEOUT_GRACE,
    PollOutcome,
    check_error_budget,
    check_seconds,
)
from airflow_provider_nanobanana.triggers.nanobanana import NanoBananaTaskTrigger

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from airflow.sdk import Context

XCOM_TASK_ID_KEY = "apixo_task_id"


class NanoBananaGenerateOperator(BaseOperator):
    """Generate images with APIXO's ``nano-banana`` model.

    Every field is checked against the API's rules before any HTTP request (the wait settings when
    the DAG is parsed). The APIXO task id is pushed to XCom (key ``apixo_task_id``) as soon as it
    exists. By default the wait is deferred to the triggerer so no worker slot is held meanwhile.
    Once the task is submitted, only a transient APIXO failure lets Airflow retry (and submit anew).

    Returns ``{"apixo_task_id", "state", "result_urls", "create_time", "complete_time",
    "cost_time"}``, or just the task id when ``wait_for_completion`` is False. Result URLs expire
    (24 hours to 15 days): download what must be kept right away.

    :param prompt: what to draw, 1 to 5000 characters. Templated.
    :param image_urls: 0 to 5 public http(s) URLs of JPG/PNG/WebP images to edit. Templated.
    :param mode: ``text-to-image`` or ``image-to-image``; inferred from ``image_urls`` when None.
    :param aspect_ratio: one of ``1:1 4:3 3:4 3:2 2:3 4:5 5:4 9:16 16:9 21:9 auto``.
    :param output_format: ``png`` or ``jpeg`` (always sent: the API's docs disagree on the default).
    :param provider: routing ``auto``, ``value`` or ``official``; None uses the connection's default.
    :param callback_url: when set, the task is submitted in callback (webhook) mode; the operator
        still waits by polling.
    :param request_type: ``async`` or ``callback``; inferred from ``callback_url`` when None.
    :param apixo_conn_id: the ``apixo`` connection.
    :param wait_for_completion: wait for the images (default) or return the task id at once.
    :param deferrable: wait in the triggerer (default) or by blocking polls on the worker.
    :param poll_interval: seconds between status reads (default 3, as the API recommends).
    :param initial_delay: seconds before the first status read (default 5).
    :param timeout: how long to wait for the task, in seconds or as a timedelta (default 300).
    :param max_consecutive_errors: failed status reads in a row that end the wait.
    """

    model = NANO_BANANA
    template_fields: Sequence[str] = (
        "prompt",
        "image_urls",
        "mode",
        "aspect_ratio",
        "output_format",
        "provider",
        "callback_url",
        "request_type",
        "apixo_conn_id",
    )
    ui_color = "#ffe135"

    def __init__(
        self,
        *,
        prompt: str,
        image_urls: Sequence[str] | None = None,
        mode: str | None = None,
        aspect_ratio: str = "1:1",
        output_format: str = "png",
        provider: str | None = None,
        callback_url: str | None = None,
        request_type: str | None = None,
        apixo_conn_id: str = ApixoHook.default_conn_name,
        wait_for_completion: bool = True,
        deferrable: bool = True,
        poll_interval: timedelta | float = DEFAULT_POLL_INTERVAL,
        initial_delay: timedelta | float = DEFAULT_INITIAL_DELAY,
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.image_urls = image_urls
        self.mode = mode
        self.aspect_ratio = aspect_ratio
        self.output_format = output_format
        self.provider = provider
        self.callback_url = callback_url
        self.request_type = request_type
        self.apixo_conn_id = apixo_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = check_seconds("poll_interval", poll_interval, minimum=0.1)
        self.initial_delay = check_seconds("initial_delay", initial_delay, minimum=0)
        self.timeout = check_seconds("timeout", timeout, minimum=1)
        self.max_consecutive_errors = check_error_budget(max_consecutive_errors)

    @cached_property
    def hook(self) -> ApixoHook:
        return ApixoHook(self.apixo_conn_id)

    def execute(self, context: Context) -> Any:
        submitted_at = time.time()
        task_id = self._submit(self._validated_request())
        with self._paid_for(task_id):
            context["ti"].xcom_push(key=XCOM_TASK_ID_KEY, value=task_id)
            if not self.wait_for_completion:
                return task_id
            end_time = time.time() + self.timeout
            if self.deferrable:
                self.defer(
                    trigger=NanoBananaTaskTrigger(
                        apixo_task_id=task_id,
                        end_time=end_time,
                        model=self.model,
                        apixo_conn_id=self.apixo_conn_id,
                        poll_interval=self.poll_interval,
                        initial_delay=self.initial_delay,
                        max_consecutive_errors=self.max_consecutive_errors,
                        submitted_at=submitted_at,
                    ),
                    method_name=self.execute_complete.__name__,
                    timeout=timedelta(seconds=self.timeout) + DEFER_TIMEOUT_GRACE,
                )
            outcome = self.hook.wait_for_task(
                self.model,
                task_id,
                initial_delay=self.initial_delay,
                poll_interval=self.poll_interval,
                deadline=end_time,
                max_consecutive_errors=self.max_consecutive_errors,
            )
            return self._finish(outcome)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Back from the trigger, or from its failure or timeout: the task is paid for either way."""
        with self._paid_for(context["ti"].xcom_pull(task_ids=self.task_id, key=XCOM_TASK_ID_KEY)):
            return super().resume_execution(next_method, next_kwargs, context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger's event; everything needed is in the event itself."""
        return self._finish(PollOutcome.from_event(event))

    def _validated_request(self) -> NanoBananaRequest:
        return NanoBananaRequest.validated(
            prompt=self.prompt,
            image_urls=self.image_urls,
            mode=self.mode,
            aspect_ratio=self.aspect_ratio,
            output_format=self.output_format,
            provider=self.provider,
            request_type=self.request_type,
            callback_url=self.callback_url,
        )

    def _submit(self, request: NanoBananaRequest) -> str:
        return self.hook.submit_task(
            self.model, request.task_input(), provider=request.provider, callback_url=request.callback_url
        )

    def _finish(self, outcome: PollOutcome) -> dict[str, Any]:
        self.log.info("%s", outcome.message)
        return outcome.result()

    @contextmanager
    def _paid_for(self, task_id: str | None) -> Iterator[None]:
        """After submission, only a transient APIXO failure may end in an Airflow retry (a new task).

        Anything else (a wait without outcome, a timeout, a lost trigger, a broken event) fails for
        good and names the task: a retry would pay again while the first task may still finish.
        """
        try:
            yield
        except (AirflowFailException, ApixoTaskFailedError):
            raise
        except (Exception, AirflowTaskTimeout) as error:
            raise AirflowFailException(
                f"After submitting APIXO task {task_id}: {type(error).__name__}: {error}. "
                "Not retried, so the image is not paid for twice: wait for it with "
                f"NanoBananaTaskSensor(apixo_task_id={task_id!r}), or clear this task to submit anew."
            ) from error
        finally:
            self.hook.close()
