"""The connection form for Airflow before 3.2, built from the provider info that 3.2+ reads.

Airflow 3.0 and 3.1 build the APIXO form from the hook's ``get_connection_form_widgets`` and
``get_ui_field_behaviour``, in WTForms' terms (their UI stands its own fields in for WTForms' when it
reads them; 3.0 reads neither method unless WTForms is importable, hence the dependency). From 3.2
the form comes from provider info's ``conn-fields`` and ``ui-field-behaviour`` alone; this module
derives the old form from them so that one definition serves every version. WTForms is imported
when Airflow asks, never at import time: a worker needs none of it.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_nanobanana.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR


def field_behaviour() -> dict[str, Any]:
    """``ui-field-behaviour`` with the underscored keys ``get_ui_field_behaviour`` returns."""
    return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}


def form_widgets() -> dict[str, Any]:
    """One WTForms field per ``conn-fields`` entry, each optional, its choices kept.

    Numbers are text fields (the older UI knows no decimal field); the hook reads text as numbers.
    """
    from wtforms import IntegerField, StringField
    from wtforms.validators import Optional, any_of

    widgets = {}
    for name, spec in CONN_FIELDS.items():
        schema = spec["schema"]
        validators = [Optional()]
        if "enum" in schema:
            validators.append(any_of(schema["enum"]))
        field_class = IntegerField if "integer" in schema["type"] else StringField
        widgets[name] = field_class(
            spec["label"],
            validators=validators,
            description=spec.get("description", ""),
            default=schema.get("default"),
        )
    return widgets
