"""ApixoGenerateOperator: validate, submit one task of any APIXO model, and wait for its outcome."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.sdk import Asset, BaseOperator
from airflow.sdk.log import mask_secret

from airflow_provider_nanobanana import metrics
from airflow_provider_nanobanana.api import is_content_rejection
from airflow_provider_nanobanana.callbacks import (
    CALLBACK_STATUS,
    DEFAULT_CALLBACK_POLL_INTERVAL,
    CallbackTicket,
    mint_ticket,
)
from airflow_provider_nanobanana.compat import (
    AirflowSkipException,
    TaskDeferred,
    own_xcom,
    resumes_an_earlier_try,
)
from airflow_provider_nanobanana.downloads import DEFAULT_MAX_IMAGE_BYTES, probe_reference
from airflow_provider_nanobanana.exceptions import ApixoError, ApixoTaskRejectedError
from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from airflow_provider_nanobanana.hooks.transport import DEFAULT_CAPACITY_WAIT
from airflow_provider_nanobanana.links import GeneratedImageLink, remember_image_link
from airflow_provider_nanobanana.polling import (
    DEFAULT_MAX_CONSECUTIVE_ERRORS,
    DEFER_TIMEOUT_GRACE,
    REATTACHED,
    VIDEO,
    PollOutcome,
    final_outcome,
    wait_cadence,
)
from airflow_provider_nanobanana.reattach import (
    Submission,
    SubmissionRecord,
    earlier_submission,
    paid_for,
    request_fingerprint,
)
from airflow_provider_nanobanana.references import REFERENCE_MARGIN, given_urls, signed_urls
from airflow_provider_nanobanana.storage import prepared_location, store_results
from airflow_provider_nanobanana.triggers.apixo import ApixoTaskTrigger
from airflow_provider_nanobanana.validation import (
    CONTENT_VIOLATION_POLICIES,
    SubmittableRequest,
    TaskRequest,
    check_callback_base_url,
    check_choice,
    check_error_budget,
    check_max_image_bytes,
    check_model_id,
    check_one_webhook,
    check_seconds,
    check_waiting,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from airflow.sdk import Context, ObjectStoragePath

XCOM_TASK_ID_KEY = "apixo_task_id"
XCOM_STORED_PATHS_KEY = "stored_paths"
"""Stored images also have an XCom of their own: ``generate.output["stored_paths"]`` is a list."""


class ApixoGenerateOperator(BaseOperator):
    """Run one task of any APIXO model: ``input`` is sent as the request's ``input`` object.

    ``input`` must be a mapping that serialises to JSON of at most 1 MB; the model checks its
    fields (APIXO answers 400 naming them, and the task fails for good). The model id is checked
    when the DAG is parsed. The wait defaults come from the API's guidance for the model's family
    (:data:`~airflow_provider_nanobanana.polling.MODEL_CADENCES`; a model not listed waits as a
    quality image model): fast image models first poll after 5 s, then every 3 s, for 5 minutes;
    quality image models 10 s / 5 s / 5 minutes; video models 60 s / 15 s / 10 minutes.

    Everything else is as in ``NanoBananaGenerateOperator``, its typed front for ``nano-banana``:
    the APIXO task id is pushed to XCom (key ``apixo_task_id``) as soon as it exists; the wait is
    deferred to the triggerer by default; a submitted task is recorded until the Airflow task has an
    outcome, so a later try reattaches to it instead of paying again
    (:mod:`airflow_provider_nanobanana.reattach`); a transient APIXO failure is retried with a new
    task, an input-caused one fails for good.

    Returns ``{"apixo_task_id", "state", "result_urls", "create_time", "complete_time",
    "cost_time", "try_number", "reattached"}`` (``reattached``: an earlier try paid for it), or just
    the task id when ``wait_for_completion`` is False. Result URLs expire (24 hours to 15 days): set
    ``output_path`` to store image results on the worker right after success; the result then also
    has ``stored_paths``, ``content_types``, ``sizes`` and ``sha256``, and ``stored_paths`` is also
    pushed under its own XCom key, so ``image_urls=generate.output["stored_paths"]`` edits them.

    :param model: the APIXO model id, such as ``seedream-4-5`` or ``veo-3-1``.
    :param input: the request's ``input`` object, passed through as given. Templated; never logged.
        Its ``image_urls``, if any, may name stored objects as ``NanoBananaGenerateOperator``'s do.
    :param provider: routing ``auto``, ``value`` or ``official``; None uses the connection's default.
    :param callback_url: APIXO's webhook goes to this endpoint of your own (callback mode); the
        operator still waits by polling. For the webhook to wake this task, use
        ``callback_base_url`` instead.
    :param request_type: ``async`` or ``callback``; inferred from ``callback_url`` when None.
    :param apixo_conn_id: the ``apixo`` connection.
    :param wait_for_completion: wait for the outcome (default) or return the task id at once.
    :param deferrable: wait in the triggerer (default) or by blocking polls on the worker.
    :param poll_interval: seconds between status reads (default: the model's).
    :param initial_delay: seconds before the first status read (default: the model's).
    :param timeout: how long to wait for the task, in seconds or as a timedelta (default: the model's).
    :param max_consecutive_errors: failed status reads in a row that end the wait (answers 429 are
        not failures: the wait reads later).
    :param submission_timeout: how long a submission answered 429 (the key's rate spent) keeps
        trying, paced, before the try fails and Airflow may retry it (default 300 s; the task's
        ``execution_timeout`` also ends it). A 429 means the task was not taken: nothing is paid twice.
    :param reattach: a later try waits for the task an earlier try submitted (default). False
        submits a new task on every try (a fresh result each time); a wait that ends without an
        outcome then fails for good instead of letting a retry pay a second time.
    :param callback_base_url: the api-server's public URL (default: the connection's extra
        ``callback_base_url``). When set and the wait is deferred, each try mints a secret webhook
        URL under it; APIXO's webhook then wakes the task within a second, and the trigger polls
        only every ``callback_poll_interval`` in case a webhook is lost. Templated.
    :param callback_poll_interval: in callback mode, the polling net's interval (default 60 s).
    :param output_path: where to store the result images (a local directory, ``file://``,
        ``s3://conn_id@bucket/prefix/``, ... or an ``ObjectStoragePath``). Templated.
    :param max_image_bytes: a result image larger than this fails the download (default 100 MiB).
    :param on_content_violation: ``fail`` (default), or ``skip``: a task the API rejects for its
        content, prompt or image ends *skipped*, so the rest of a mapped batch goes on.
    :param lineage_prompt: send the prompt itself in the OpenLineage run facet (default: only its
        SHA-256).
    :param check_image_urls: before submitting, read the first bytes of each reference image as
        APIXO will (a GET without credentials), so an unreachable, private, expired or non-image
        reference fails before anything is paid for (default True). Turn it off only where the
        worker cannot reach what APIXO can.

    Each success also sets the "Generated image" link on the task's page, and the ``extra`` of the
    events of its ``Asset`` outlets: ``apixo_task_id``, ``model``, ``prompt_sha256`` (of the
    input's ``prompt``; None without one), ``stored_paths`` (when stored), ``result_urls`` and
    APIXO's times.
    """

    template_fields: Sequence[str] = (
        "input",
        "provider",
        "callback_url",
        "callback_base_url",
        "request_type",
        "apixo_conn_id",
        "output_path",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"input": "json"}
    ui_color = "#ffe135"
    operator_extra_links = (GeneratedImageLink(),)

    def __init__(
        self,
        *,
        model: str,
        input: Mapping[str, Any] | str | None,
        provider: str | None = None,
        callback_url: str | None = None,
        callback_base_url: str | None = None,
        callback_poll_interval: timedelta | float = DEFAULT_CALLBACK_POLL_INTERVAL,
        request_type: str | None = None,
        apixo_conn_id: str = ApixoHook.default_conn_name,
        wait_for_completion: bool = True,
        deferrable: bool = True,
        poll_interval: timedelta | float | None = None,
        initial_delay: timedelta | float | None = None,
        timeout: timedelta | float | None = None,
        max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
        submission_timeout: timedelta | float = DEFAULT_CAPACITY_WAIT,
        reattach: bool = True,
        output_path: str | ObjectStoragePath | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        on_content_violation: str = "fail",
        lineage_prompt: bool = False,
        check_image_urls: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = check_model_id(model)
        self.input = input
        self.provider = provider
        self.callback_url = callback_url
        cadence = wait_cadence(self.model)
        check_waiting(
            deferrable=deferrable,
            wait_for_completion=wait_for_completion,
            callback_base_url=callback_base_url,
            output_path=output_path,
            makes_images=cadence is not VIDEO,
            model=self.model,
        )
        self.callback_base_url = callback_base_url
        self.callback_poll_interval = check_seconds(
            "callback_poll_interval", callback_poll_interval, minimum=1
        )
        self.request_type = request_type
        self.apixo_conn_id = apixo_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = check_seconds(
            "poll_interval", cadence.poll_interval if poll_interval is None else poll_interval, minimum=0.1
        )
        self.initial_delay = check_seconds(
            "initial_delay", cadence.initial_delay if initial_delay is None else initial_delay, minimum=0
        )
        self.timeout = check_seconds("timeout", cadence.timeout if timeout is None else timeout, minimum=1)
        self.max_consecutive_errors = check_error_budget(max_consecutive_errors)
        self.submission_timeout = check_seconds("submission_timeout", submission_timeout, minimum=0)
        self.reattach = reattach
        self.output_path = output_path
        self.max_image_bytes = check_max_image_bytes(max_image_bytes)
        self.on_content_violation = check_choice(
            "on_content_violation", on_content_violation, CONTENT_VIOLATION_POLICIES
        )
        self.lineage_prompt = lineage_prompt
        self.check_image_urls = check_image_urls
        self._delivered: dict[str, Any] | None = None

    @cached_property
    def hook(self) -> ApixoHook:
        return ApixoHook(self.apixo_conn_id)

    def execute(self, context: Context) -> Any:
        with self._outcome_reported():
            return self._submit_and_wait(context)

    def _submit_and_wait(self, context: Context) -> Any:
        """Submit (or reattach to an earlier try's task), then wait unless told not to."""
        request = self._validated_request()
        if self.output_path is not None:
            prepared_location(self.output_path)
        callback_base_url = self._callback_base_url(request)
        record = self._record(context)
        fingerprint = request_fingerprint(self.model, request.task_input(), request.provider)
        try:
            with self._content_violation_policy():
                reattached = earlier_submission(record, fingerprint, self.hook, self.log)
                ticket = None
                if reattached is None:
                    if callback_base_url is not None:
                        ticket = mint_ticket(callback_base_url, str(context["ti"].id))
                    submission, ended = self._submitted(request, record, fingerprint, ticket), None
                else:  # APIXO calls the earlier try's URL: this try relies on polling
                    submission, ended = reattached
                with paid_for(submission.task_id, self.model, record):
                    context["ti"].xcom_push(key=XCOM_TASK_ID_KEY, value=submission.task_id)
                    if not self.wait_for_completion:
                        return submission.task_id
                    if ended is not None:
                        return self._finish(ended, context, reattached=True)
                    return self._wait(submission, context, ticket, reattached=reattached is not None)
        finally:
            self.hook.close()

    def _wait(
        self,
        submission: Submission,
        context: Context,
        ticket: CallbackTicket | None = None,
        *,
        reattached: bool = False,
    ) -> Any:
        """Defer, or poll here; either way ``initial_delay`` counts from the submission."""
        end_time = time.time() + self.timeout
        if self.deferrable:
            token_sha256 = None if ticket is None else ticket.token_sha256
            self._defer(
                context,
                submission.task_id,
                submission.submitted_at,
                end_time,
                token_sha256,
                reattached=reattached,
            )
        outcome = self.hook.wait_for_task(
            self.model,
            submission.task_id,
            initial_delay=max(0.0, submission.submitted_at + self.initial_delay - time.time()),
            poll_interval=self.poll_interval,
            deadline=end_time,
            max_consecutive_errors=self.max_consecutive_errors,
        )
        return self._finish(outcome, context, reattached=reattached)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Back from the trigger, or from its failure or timeout: the task is paid for either way."""
        if resumes_an_earlier_try(context, next_kwargs):  # its record says whether that try paid
            return self.execute(context)
        task_id = own_xcom(context, self.task_id, XCOM_TASK_ID_KEY)
        try:
            record = self._record(context, resumed=True)
            with (
                self._outcome_reported(),
                self._content_violation_policy(),
                paid_for(task_id, self.model, record),
            ):
                return super().resume_execution(next_method, next_kwargs, context)
        finally:
            self.hook.close()

    def _defer(
        self,
        context: Context,
        task_id: str,
        submitted_at: float,
        end_time: float,
        callback_token_sha256: str | None,
        *,
        webhook_expected: bool = True,
        reattached: bool = False,
    ) -> NoReturn:
        """Wait in the triggerer; in callback mode its polling is only the net for a lost webhook.

        Once a webhook has come but the task had not ended (APIXO lagging, a read failing), the
        trigger polls at the usual cadence again: APIXO will not call a second time.
        """
        callback = callback_token_sha256 is not None
        cadence = self.callback_poll_interval if callback and webhook_expected else None

        self.defer(
            trigger=ApixoTaskTrigger(
                apixo_task_id=task_id,
                end_time=end_time,
                model=self.model,
                apixo_conn_id=self.apixo_conn_id,
                poll_interval=cadence or self.poll_interval,
                initial_delay=cadence or self.initial_delay,
                max_consecutive_errors=self.max_consecutive_errors,
                submitted_at=submitted_at,
                callback_token_sha256=callback_token_sha256,
                deferring_try=context["ti"].try_number,
                reattached=reattached,
            ),
            method_name=self.execute_complete.__name__,
            kwargs={"callback": self._callback_state(submitted_at, end_time, callback_token_sha256)}
            if callback
            else None,
            timeout=timedelta(seconds=max(0.0, end_time - time.time())) + DEFER_TIMEOUT_GRACE,
        )

    def execute_complete(
        self, context: Context, event: dict[str, Any], callback: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after the trigger's event, or after APIXO's webhook woke the task (``callback``)."""
        if callback is not None and isinstance(event, dict) and event.get("status") == CALLBACK_STATUS:
            return self._verified_callback(context, **callback)
        outcome = PollOutcome.from_event(event)
        return self._finish(outcome, context, reattached=event.get(REATTACHED) is True)

    @staticmethod
    def _callback_state(submitted_at: float, end_time: float, token_sha256: str | None) -> dict[str, Any]:
        """What a webhook-woken task needs to wait again (no secret: the token's hash only)."""
        return {"submitted_at": submitted_at, "end_time": end_time, "token_sha256": token_sha256}

    def _verified_callback(
        self, context: Context, submitted_at: float, end_time: float, token_sha256: str
    ) -> dict[str, Any]:
        """The webhook says the task ended: believe only a status read; if not over, wait again.

        Waiting again keeps the same token, so APIXO's retries still reach the task.
        """
        task_id = own_xcom(context, self.task_id, XCOM_TASK_ID_KEY)
        try:
            outcome = final_outcome(self.model, self.hook.get_task_status(self.model, task_id))
        except ApixoError as error:
            self.log.warning(
                "Could not confirm APIXO's webhook for task %s (%s): waiting again", task_id, error
            )
            outcome = None
        if outcome is None:
            self.log.info("APIXO task %s has not ended yet: polling it again", task_id)
            self._defer(context, task_id, submitted_at, end_time, token_sha256, webhook_expected=False)
        self.log.info("Woken by APIXO's webhook; confirmed by a status read")
        return self._finish(outcome, context)

    def _validated_request(self) -> SubmittableRequest:
        """The request as sent, checked before any HTTP call; typed fronts check more."""
        return TaskRequest.validated(
            model=self.model,
            task_input=self.input,
            provider=self.provider,
            request_type=self.request_type,
            callback_url=self.callback_url,
        )

    def _prompt(self) -> str | None:
        """The prompt the asset event's ``prompt_sha256`` is of, if the request has one."""
        prompt = self.input.get("prompt") if isinstance(self.input, Mapping) else None
        return prompt if isinstance(prompt, str) else None

    def _callback_base_url(self, request: SubmittableRequest) -> str | None:
        """Where this try's webhook goes, if APIXO's webhook is to wake the deferred task."""
        check_one_webhook(self.callback_base_url, request.callback_url)
        if request.callback_url is not None:  # APIXO calls the user's own endpoint instead
            return None
        if not (self.deferrable and self.wait_for_completion) or self.request_type == "async":
            return None
        if self.callback_base_url:
            return check_callback_base_url(self.callback_base_url)
        return self.hook.settings.callback_base_url

    def _submitted(
        self,
        request: SubmittableRequest,
        record: SubmissionRecord,
        fingerprint: str,
        ticket: CallbackTicket | None,
    ) -> Submission:
        """Submit the task and record it before anything else can fail."""
        if ticket is not None:
            mask_secret(ticket.token)
        task_input = self._sendable_input(request)
        submitted_at = time.time()
        callback_url = ticket.url if ticket is not None else request.callback_url
        task_id = self.hook.submit_task(
            self.model,
            task_input,
            provider=request.provider,
            callback_url=callback_url,
            capacity_wait=self.submission_timeout,
        )
        submission = Submission(task_id, self.model, submitted_at, fingerprint)
        record.write(submission)
        return submission

    def _sendable_input(self, request: SubmittableRequest) -> dict[str, Any]:
        """The input as APIXO gets it: stored objects signed for the whole wait plus a margin, and
        every reference probed first unless ``check_image_urls`` is off."""
        if not request.references:
            return request.task_input()
        urls = signed_urls(request.references, self.submission_timeout + self.timeout + REFERENCE_MARGIN)
        if self.check_image_urls:
            for reference, url in zip(request.references, urls, strict=True):
                probe_reference(reference.field, url, reference.given)
        return request.task_input(urls)

    def _finish(self, outcome: PollOutcome, context: Context, *, reattached: bool = False) -> dict[str, Any]:
        """The result of a finished task, its images stored when ``output_path`` is set, with the
        try that delivered it and whether an earlier try paid for it (``reattached``): summing
        results over tries counts each generation once."""
        self.log.info("%s", outcome.message)
        if outcome.task is not None:
            metrics.detected(self.model, outcome.task.complete_time)
        result = {**outcome.result(), "try_number": context["ti"].try_number, "reattached": reattached}
        if self.output_path is not None:
            result = store_results(result, self.output_path, context, self.max_image_bytes, self.log)
            context["ti"].xcom_push(key=XCOM_STORED_PATHS_KEY, value=result["stored_paths"])
        self._announce(result, context)
        metrics.delivered(self.model, result)
        self._delivered = result
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """What this generation read and wrote, for the OpenLineage provider (when installed)."""
        from airflow_provider_nanobanana.lineage import generation_lineage

        return generation_lineage(
            self.model,
            self._delivered,
            given_urls(self._validated_request().references),
            self._prompt(),
            include_prompt=self.lineage_prompt,
        )

    def _announce(self, result: dict[str, Any], context: Context) -> None:
        """Tell the UI (the image link) and downstream DAGs (asset event extra) what was made."""
        remember_image_link(self, result)
        prompt = self._prompt()
        extra: dict[str, Any] = {
            "apixo_task_id": result["apixo_task_id"],
            "model": self.model,
            "prompt_sha256": None if prompt is None else hashlib.sha256(prompt.encode()).hexdigest(),
            "stored_paths": result.get("stored_paths", []),
            "result_urls": result["result_urls"],
            "create_time": result["create_time"],
            "complete_time": result["complete_time"],
            "cost_time": result["cost_time"],
            "try_number": result["try_number"],
            "reattached": result["reattached"],
        }
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)

    @contextmanager
    def _outcome_reported(self) -> Iterator[None]:
        """Count the task's failure or skip (its success is counted where the result is made)."""
        try:
            yield
        except TaskDeferred:
            raise
        except AirflowSkipException:
            metrics.count("task.skipped", model=self.model)
            raise
        except Exception:
            metrics.count("task.failed", model=self.model)
            raise

    @contextmanager
    def _content_violation_policy(self) -> Iterator[None]:
        """With ``on_content_violation="skip"``, a rejected prompt or image skips this task."""
        try:
            yield
        except ApixoTaskRejectedError as error:
            if self.on_content_violation != "skip" or not is_content_rejection(error.fail_code):
                raise
            self.log.warning("Skipping this task (on_content_violation='skip'): %s", error)
            raise AirflowSkipException(f"APIXO rejected the request: {error}") from error

    def _record(self, context: Context, *, resumed: bool = False) -> SubmissionRecord:
        return SubmissionRecord.of(context, resumed=resumed) if self.reattach else SubmissionRecord(None)
