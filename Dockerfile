# The cdc service image (consumer `cdc run`, and one-shot commands such as
# `cdc connector register`). Dependencies come only from the hashed lock file.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (cached layer): exact versions, verified hashes, nothing resolved here.
COPY requirements/prod.lock requirements/prod.lock
RUN pip install --require-hashes --no-deps -r requirements/prod.lock

# Then the project itself, without touching the dependencies.
COPY . /app
RUN pip install --no-deps /app \
    && useradd --system --uid 10001 --home-dir /data cdc \
    && mkdir -p /data /config \
    && chown cdc /data

USER cdc
VOLUME ["/data"]

CMD ["cdc", "run", "--config", "/config/cdc.yaml"]
