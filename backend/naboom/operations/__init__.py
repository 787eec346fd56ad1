"""Operations: health checks, worker heartbeats and Prometheus metrics."""
