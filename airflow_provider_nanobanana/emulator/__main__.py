"""``python -m airflow_provider_nanobanana.emulator``: the same as the ``apixo-emulator`` script."""

from __future__ import annotations

from airflow_provider_nanobanana.emulator.cli import main

raise SystemExit(main())
