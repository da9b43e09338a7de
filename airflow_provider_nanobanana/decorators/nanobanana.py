"""``@task.nanobanana``: a Python function builds the prompt; the Nano Banana operator does the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory
from airflow.sdk.definitions._internal.types import SET_DURING_EXECUTION

from airflow_provider_nanobanana.compat import context_merge, determine_kwargs, own_xcom
from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from airflow_provider_nanobanana.validation import requested_fields

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence

    from airflow.sdk import Context
    from airflow.sdk.bases.decorator import TaskDecorator

XCOM_REQUEST_KEY = "nanobanana_request"


class _NanoBananaDecoratedOperator(DecoratedOperator, NanoBananaGenerateOperator):
    """Runs the function on the worker, then submits and waits as ``NanoBananaGenerateOperator``.

    The function runs once per try: a task resumed from the triggerer reads what it returned from
    XCom (key ``nanobanana_request``), as a resumed task is a fresh copy of the DAG's.
    """

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *NanoBananaGenerateOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {**DecoratedOperator.template_fields_renderers}
    custom_operator_name = "@task.nanobanana"
    overwrite_rtif_after_execution = True

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            prompt=SET_DURING_EXECUTION,
            **kwargs,
        )

    def execute(self, context: Context) -> Any:
        request = requested_fields(self._call(context))
        context["ti"].xcom_push(key=XCOM_REQUEST_KEY, value=request)
        self._apply(request)
        return super().execute(context)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        self._apply(own_xcom(context, self.task_id, XCOM_REQUEST_KEY) or {})
        return super().resume_execution(next_method, next_kwargs, context)

    def _call(self, context: Context) -> Any:
        """The function, called as TaskFlow calls it: its arguments, then context by name."""
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        return self.python_callable(*self.op_args, **kwargs)

    def _apply(self, request: Mapping[str, Any]) -> None:
        for name, value in request.items():
            setattr(self, name, value)


def nanobanana_task(
    python_callable: Callable[..., Any] | None = None, *, multiple_outputs: bool = False, **kwargs: Any
) -> TaskDecorator:
    """``@task.nanobanana(...)``: the function returns the prompt, or a dict of request fields.

    The decorator takes ``NanoBananaGenerateOperator``'s other arguments (``output_path``,
    ``deferrable``, ``timeout``, ``on_content_violation``, ...). The task's result is the
    operator's: the APIXO task id, the result URLs and, with ``output_path``, the stored files.
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,  # never inferred from "-> dict": the result is the operator's
        decorated_operator_class=_NanoBananaDecoratedOperator,
        **kwargs,
    )
