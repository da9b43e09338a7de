"""Provider metadata read by Airflow (entry point ``apache_airflow_provider``).

The connection form of the Airflow 3.2+ UI is built only from ``conn-fields`` and
``ui-field-behaviour`` here; the hook derives the older versions' form from them. Airflow imports
this module while it loads providers, so it imports nothing from the package but its version (a
test checks the literals against ``api``, ``pacing`` and ``hooks.settings``).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_nanobanana import __version__

INTEGRATION = "APIXO"
DEFAULT_BASE_URL = "https://api.apixo.ai/api/v1"
PROVIDERS = ["auto", "value", "official"]
APIXO_REQUESTS_PER_MINUTE = 10_000
DEFAULT_REQUESTS_PER_MINUTE = 9_000
DEFAULT_MAX_IN_FLIGHT = 32


CONN_FIELDS: dict[str, dict[str, Any]] = {
    "provider": {
        "label": "Default provider routing",
        "description": "auto: cheapest with failover; value: cheapest; official: direct.",
        "schema": {"type": ["string", "null"], "default": "auto", "enum": PROVIDERS},
    },
    "timeout": {
        "label": "Request timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 30},
    },
    "requests_per_minute": {
        "label": "Requests per minute (this process)",
        "description": (
            "This process's share of the key's 10,000 a minute. Divide it between "
            "processes, or share one budget through Redis below."
        ),
        "schema": {
            "type": ["integer", "null"],
            "default": DEFAULT_REQUESTS_PER_MINUTE,
            "minimum": 1,
            "maximum": APIXO_REQUESTS_PER_MINUTE,
        },
    },
    "rate_limit_storage": {
        "label": "Shared budget (Redis URL)",
        "description": "redis://host:6379/0 shares the budget between processes.",
        "schema": {"type": ["string", "null"]},
    },
    "callback_base_url": {
        "label": "Callback base URL",
        "description": (
            "The public https URL of this Airflow's api-server: APIXO's webhook then "
            "wakes deferred tasks (route /nanobanana/callback). Empty: poll only."
        ),
        "schema": {"type": ["string", "null"]},
    },
    "max_in_flight": {
        "label": "Requests in flight at most",
        "schema": {
            "type": ["integer", "null"],
            "default": DEFAULT_MAX_IN_FLIGHT,
            "minimum": 1,
            "maximum": 1000,
        },
    },
}
"""The connection form's extra fields, stored under their bare names in the connection's extra."""

RELABELING = {"host": "Base URL", "password": "API key"}
"""The form's names for the standard fields the connection uses."""

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "port", "extra"],
    "relabeling": RELABELING,
    "placeholders": {"host": DEFAULT_BASE_URL, "password": "APIXO API key"},
}
"""The standard fields: which the form hides, and what it calls and suggests for the others."""


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-nanobanana",
        "name": "APIXO Nano Banana",
        "description": "Generate images with APIXO's task API (Nano Banana and other APIXO models).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://apixo.ai",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_nanobanana.hooks.apixo"]}
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_nanobanana.operators.apixo",
                    "airflow_provider_nanobanana.operators.nanobanana",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_nanobanana.sensors.apixo",
                    "airflow_provider_nanobanana.sensors.nanobanana",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_nanobanana.triggers.apixo",
                    "airflow_provider_nanobanana.triggers.nanobanana",
                ],
            }
        ],
        "extra-links": ["airflow_provider_nanobanana.links.GeneratedImageLink"],
        "task-decorators": [
            {
                "name": "nanobanana",
                "class-name": "airflow_provider_nanobanana.decorators.nanobanana.nanobanana_task",
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_nanobanana.hooks.apixo.ApixoHook",
                "hook-name": "APIXO",
                "connection-type": "apixo",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
