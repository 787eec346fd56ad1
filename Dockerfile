# The Python app (naboom serve / migrate / user / device). compose.yaml builds and runs it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY backend ./backend
RUN pip install -c constraints.txt . \
 && useradd --system --uid 10001 --home-dir /app naboom \
 && mkdir -p /app/var \
 && chown naboom /app/var

USER naboom
ENV NABOOM_VAR_DIR=/app/var \
    NABOOM_HTTP_HOST=0.0.0.0
EXPOSE 8000
CMD ["naboom", "serve"]
