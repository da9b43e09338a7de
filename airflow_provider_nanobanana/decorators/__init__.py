"""TaskFlow decorators (``@task.nanobanana``), declared in provider info ``task-decorators``."""
