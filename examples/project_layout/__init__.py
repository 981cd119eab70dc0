"""A project laid out as the best-practice guide suggests: tasks/ and pipelines/."""
