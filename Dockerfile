# The Python app (naboom serve / worker / scheduler / migrate / user / device) with the built
# control-room monitor, which `naboom serve` serves at /monitor/. compose.yaml builds and runs it.
FROM node:20-slim AS monitor
WORKDIR /frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci
COPY frontend ./
RUN npm run build

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
COPY --from=monitor /frontend/dist /app/monitor
ENV NABOOM_VAR_DIR=/app/var \
    NABOOM_HTTP_HOST=0.0.0.0 \
    NABOOM_MONITOR_DIR=/app/monitor
EXPOSE 8000
CMD ["naboom", "serve"]
