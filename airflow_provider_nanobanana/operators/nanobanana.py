"""NanoBananaGenerateOperator: validate, submit one Nano Banana task, and wait for its images."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_nanobanana.api import NANO_BANANA
from airflow_provider_nanobanana.callbacks import DEFAULT_CALLBACK_POLL_INTERVAL
from airflow_provider_nanobanana.downloads import DEFAULT_MAX_IMAGE_BYTES
from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from airflow_provider_nanobanana.hooks.transport import DEFAULT_CAPACITY_WAIT
from airflow_provider_nanobanana.operators.apixo import XCOM_TASK_ID_KEY, ApixoGenerateOperator
from airflow_provider_nanobanana.polling import DEFAULT_MAX_CONSECUTIVE_ERRORS
from airflow_provider_nanobanana.validation import NanoBananaRequest

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import timedelta

    from airflow.sdk import ObjectStoragePath

__all__ = ["XCOM_TASK_ID_KEY", "NanoBananaGenerateOperator"]


class NanoBananaGenerateOperator(ApixoGenerateOperator):
    """Generate images with APIXO's ``nano-banana`` model: the typed front of
    :class:`~airflow_provider_nanobanana.operators.apixo.ApixoGenerateOperator`.

    Every request field is checked against the API's rules before any HTTP request (the wait
    settings when the DAG is parsed). Waiting, outcomes, reattaching, storing, the image link, asset
    events and callback mode are the generic operator's, as are the parameters not listed here.

    :param prompt: what to draw, 1 to 5000 characters. Templated.
    :param image_urls: 0 to 5 JPG/PNG/WebP images to edit, each a public http(s) URL, an
        ``ObjectStoragePath`` or an object-store URI (``s3://conn_id@bucket/key``, ``gs://...``, such
        as an upstream generation's ``stored_paths``), which is signed on the worker just before
        submitting. Local files are refused: APIXO cannot reach them. Templated.
    :param mode: ``text-to-image`` or ``image-to-image``; inferred from ``image_urls`` when None.
    :param aspect_ratio: one of ``1:1 4:3 3:4 3:2 2:3 4:5 5:4 9:16 16:9 21:9 auto``.
    :param output_format: ``png`` or ``jpeg`` (always sent: the API's docs disagree on the default).
    :param poll_interval: seconds between status reads (default 3, as the API recommends).
    :param initial_delay: seconds before the first status read (default 5).
    :param timeout: how long to wait for the task, in seconds or as a timedelta (default 300:
        longer than the API's 2 minutes for fast image models, as a scheduled batch can queue).
        The three defaults are ``nano-banana``'s row of
        :data:`~airflow_provider_nanobanana.polling.MODEL_CADENCES`, as for the generic operator.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "image_urls",
        "mode",
        "aspect_ratio",
        "output_format",
        *(name for name in ApixoGenerateOperator.template_fields if name != "input"),
    )

    def __init__(
        self,
        *,
        prompt: str,
        image_urls: Sequence[str | ObjectStoragePath] | None = None,
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
        poll_interval: timedelta | float | None = None,
        initial_delay: timedelta | float | None = None,
        timeout: timedelta | float | None = None,
        max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
        submission_timeout: timedelta | float = DEFAULT_CAPACITY_WAIT,
        reattach: bool = True,
        output_path: str | ObjectStoragePath | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        on_content_violation: str = "fail",
        check_image_urls: bool = True,
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
            submission_timeout=submission_timeout,
            reattach=reattach,
            output_path=output_path,
            max_image_bytes=max_image_bytes,
            on_content_violation=on_content_violation,
            check_image_urls=check_image_urls,
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
