"""Background work on TaskIQ: queues, the task registry, workers and the one scheduler."""
