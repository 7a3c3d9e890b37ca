FROM python:3.11-slim-bookworm
WORKDIR /src
COPY pyproject.toml README.md ./
COPY zones zones
COPY lifecycle lifecycle
COPY quality quality
COPY lineage lineage
COPY catalog catalog
COPY dags dags
COPY sql sql
RUN pip install --no-cache-dir uv && uv pip install --system --no-cache . && useradd -m datazones
USER datazones
WORKDIR /app
ENTRYPOINT []
CMD ["zones", "--help"]
