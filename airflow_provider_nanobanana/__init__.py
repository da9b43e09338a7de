"""Apache Airflow provider for APIXO's asynchronous image-generation task API (Nano Banana first)."""

from __future__ import annotations

__version__ = "0.2.0"
