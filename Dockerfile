# The bulk_pipeline code location: the package and its dependencies, nothing secret.
# One image serves every role of a deployment (code location, webserver, daemon, runs):
#   docker build -t bulk-pipeline:0.1.0 .
# Secrets (CRM tokens, BULK_PIPELINE_DATABASE_URL) come from the platform at run time
# (compose: an env file; Kubernetes: Secrets); none is set or copied here. See docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    BULK_PIPELINE_HOME=/var/lib/bulk_pipeline

WORKDIR /opt/bulk_pipeline
COPY pyproject.toml README.md ./
COPY bulk_pipeline ./bulk_pipeline
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /opt/dagster bulk \
    && mkdir -p "$DAGSTER_HOME" "$BULK_PIPELINE_HOME" \
    && chown -R bulk "$DAGSTER_HOME" "$BULK_PIPELINE_HOME"
COPY deploy/dagster.yaml deploy/workspace.yaml $DAGSTER_HOME/

USER 10001
EXPOSE 4000
# The code location's gRPC server; the webserver and the daemon run the same image with their
# own command (deploy/compose.yaml).
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", \
     "--module-name", "bulk_pipeline.definitions", "--location-name", "bulk_pipeline"]
