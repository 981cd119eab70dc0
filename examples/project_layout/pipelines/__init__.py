"""Pipelines: each module builds one Pipeline from tasks in ../tasks."""
