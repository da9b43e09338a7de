"""NanoBananaGenerateOperator: validate, submit one Nano Banana task, and wait for its images."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_nanobanana.callbacks import DEFAULT_CALLBACK_POLL_INTERVAL
from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from airflow_provider_nanobanana.models import (
    DEFAULT_INITIAL_DELAY,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    NANO_BANANA,
    NanoBananaRequest,
)
from airflow_provider_nanobanana.operators.apixo import XCOM_TASK_ID_KEY, ApixoGenerateOperator
from airflow_provider_nanobanana.polling import DEFAULT_MAX_CONSECUTIVE_ERRORS
from airflow_provider_nanobanana.storage import DEFAULT_MAX_IMAGE_BYTES

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import timedelta

    from airflow.sdk import ObjectStoragePath

__all__ = ["XCOM_TASK_ID_KEY", "NanoBananaGenerateOperator"]


class NanoBananaGenerateOperator(ApixoGenerateOperator):
    """Generate images with APIXO's ``nano-banana`` model: the typed front of
    :class:`~airflow_provider_nanobanana.operators.apixo.ApixoGenerateOperator`.

    Every field is checked against the API's rules before any HTTP request (the wait settings when
    the DAG is parsed). The APIXO task id is pushed to XCom (key ``apixo_task_id``) as soon as it
    exists. By default the wait is deferred to the triggerer so no worker slot is held meanwhile.

    A submitted task is recorded in ``task_state_store`` until the Airflow task has an outcome, so
    the next try after a crash, a lost trigger or a wait that ran out reattaches to it instead of
    paying again (:mod:`airflow_provider_nanobanana.reattach`). A transient APIXO failure is
    retried with a new task; an input-caused one fails for good.

    Returns ``{"apixo_task_id", "state", "result_urls", "create_time", "complete_time",
    "cost_time"}``, or just the task id when ``wait_for_completion`` is False. Result URLs expire
    (24 hours to 15 days): set ``output_path`` to store the images on the worker right after
    success; the result then also has ``stored_paths``, ``content_types``, ``sizes`` and ``sha256``.

    :param prompt: what to draw, 1 to 5000 characters. Templated.
    :param image_urls: 0 to 5 public http(s) URLs of JPG/PNG/WebP images to edit. Templated.
    :param mode: ``text-to-image`` or ``image-to-image``; inferred from ``image_urls`` when None.
    :param aspect_ratio: one of ``1:1 4:3 3:4 3:2 2:3 4:5 5:4 9:16 16:9 21:9 auto``.
    :param output_format: ``png`` or ``jpeg`` (always sent: the API's docs disagree on the default).
    :param provider: routing ``auto``, ``value`` or ``official``; None uses the connection's default.
    :param callback_url: APIXO's webhook goes to this endpoint of your own (callback mode); the
        operator still waits by polling. For the webhook to wake this task, use
        ``callback_base_url`` instead.
    :param request_type: ``async`` or ``callback``; inferred from ``callback_url`` when None.
    :param apixo_conn_id: the ``apixo`` connection.
    :param wait_for_completion: wait for the images (default) or return the task id at once.
    :param deferrable: wait in the triggerer (default) or by blocking polls on the worker.
    :param poll_interval: seconds between status reads (default 3, as the API recommends).
    :param initial_delay: seconds before the first status read (default 5).
    :param timeout: how long to wait for the task, in seconds or as a timedelta (default 300).
    :param max_consecutive_errors: failed status reads in a row that end the wait.
    :param reattach: a later try waits for the task an earlier try submitted (default). False
        submits a new task on every try (a fresh image each time); a wait that ends without an
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

    Each success also sets the "Generated image" link on the task's page, and the ``extra`` of the
    events of its ``Asset`` outlets: ``apixo_task_id``, ``model``, ``prompt_sha256``,
    ``stored_paths`` (when stored), ``result_urls`` and APIXO's times.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "image_urls",
        "mode",
        "aspect_ratio",
        "output_format",
        "provider",
        "callback_url",
        "callback_base_url",
        "request_type",
        "apixo_conn_id",
        "output_path",
    )

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
        callback_base_url: str | None = None,
        callback_poll_interval: timedelta | float = DEFAULT_CALLBACK_POLL_INTERVAL,
        request_type: str | None = None,
        apixo_conn_id: str = ApixoHook.default_conn_name,
        wait_for_completion: bool = True,
        deferrable: bool = True,
        poll_interval: timedelta | float = DEFAULT_POLL_INTERVAL,
        initial_delay: timedelta | float = DEFAULT_INITIAL_DELAY,
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
        reattach: bool = True,
        output_path: str | ObjectStoragePath | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        on_content_violation: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model=NANO_BANANA,
            input=None,  # built from the typed fields at execute time
            provider=provider,
            callback_url=callback_url,
            callback_base_url=callback_base_url,
            callback_poll_interval=callback_poll_interval,
            request_type=request_type,
            apixo_conn_id=apixo_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            poll_interval=poll_interval,
            initial_delay=initial_delay,
            timeout=timeout,
            max_consecutive_errors=max_consecutive_errors,
            reattach=reattach,
            output_path=output_path,
            max_image_bytes=max_image_bytes,
            on_content_violation=on_content_violation,
            **kwargs,
        )
        self.prompt = prompt
        self.image_urls = image_urls
        self.mode = mode
        self.aspect_ratio = aspect_ratio
        self.output_format = output_format

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

    def _prompt(self) -> str:
        return str(self.prompt)
