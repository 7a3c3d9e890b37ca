# Build stage: a C compiler for the pseudonymisation kernel (hatch_build.py), then a wheel.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md hatch_build.py ./
COPY zones zones
COPY lifecycle lifecycle
COPY quality quality
COPY lineage lineage
COPY catalog catalog
COPY dags dags
COPY sql sql
RUN pip install --no-cache-dir uv && uv build --wheel -o /wheels .

FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir uv && uv pip install --system --no-cache /wheels/*.whl && rm -rf /wheels \
    && useradd -m datazones
USER datazones
WORKDIR /app
ENTRYPOINT []
CMD ["zones", "--help"]
