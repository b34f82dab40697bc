# Samverkan Hub: one image for every hub process (worker, ingest gateway, connectors, PKI, users and topics).
# The command picks the role: `docker run IMAGE worker`, `... ingest`, `... connector polisen-feed`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HUB_STATE_DIR=/var/lib/hub \
    HUB_SCHEMAS_DIR=/app/schemas \
    HUB_RULES_PATH=/app/hub/rules/halland.yaml \
    HUB_WORKER__WEB_HOST=0.0.0.0 \
    HUB_WORKER__WEB_PORT=6066 \
    HUB_INGEST__HOST=0.0.0.0 \
    HUB_INGEST__PORT=8088

# Install the package (hub + connectors) from a throw-away source copy.
COPY pyproject.toml README.md /src/
COPY hub /src/hub
COPY connectors /src/connectors
RUN pip install /src && rm -rf /src

# The contract and the routing rules, read at run time (HUB_SCHEMAS_DIR, HUB_RULES_PATH).
WORKDIR /app
COPY schemas /app/schemas
COPY hub/rules /app/hub/rules

# Non-root user; /var/lib/hub is its state dir and /secrets the compose `pki` job's output (a named volume
# mounted on either inherits the ownership: the pki job writes the cluster's trust material as `hub`).
RUN groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /var/lib/hub --no-create-home hub \
    && mkdir -p /var/lib/hub /secrets \
    && chown -R hub:hub /var/lib/hub /secrets \
    && chmod 0700 /secrets
USER hub:hub

EXPOSE 6066 8088

# The worker's liveness endpoint (services with another role override this in docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HUB_WORKER__WEB_PORT', '6066') + '/health', timeout=4)"]

ENTRYPOINT ["hub"]
CMD ["worker"]
