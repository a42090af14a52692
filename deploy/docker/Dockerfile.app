# rental-app: one image for the project's processes other than the pricing service, all through
# the `rental` CLI (the entrypoint) or the servers the lock carries:
#   rental stream features | rental monitor run | rental flows ... | rental simulate live
#   --entrypoint mlflow  rental-app server ...   |   --entrypoint prefect rental-app server start
# Built by deploy/docker/build_images.py from a staged context, not the repository: the product
# folders, pyproject.toml, uv.lock, requirements.txt (exported from uv.lock, no dev group) and
# extra-ca.crt (the machine's extra CA certificates, possibly empty; used while building only).
ARG PYTHON_IMAGE=python:3.11-slim
ARG UV_VERSION=0.13.8

# deps: the locked requirements in /opt/venv, rebuilt only when they change.
FROM ${PYTHON_IMAGE} AS deps
ARG UV_VERSION
# build_images.py keeps the newest image of these stages (the cache of the next build) and removes older ones.
LABEL org.rental-pricing.stage=rental-app-build
COPY extra-ca.crt /tmp/extra-ca.crt
# pip and uv trust Debian's CAs plus the machine's extra ones while they download.
RUN cat /etc/ssl/certs/ca-certificates.crt /tmp/extra-ca.crt > /tmp/ca.pem
ENV SSL_CERT_FILE=/tmp/ca.pem PIP_CERT=/tmp/ca.pem UV_COMPILE_BYTECODE=1 UV_NO_CACHE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
 && uv venv --python /usr/local/bin/python3 /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN uv pip install --python /opt/venv/bin/python --require-hashes --no-deps -r /tmp/requirements.txt

# project: the project installed editable at /app (the settings find feature_repo/ and the other
# folders beside the code); only the files that install adds to the venv go on, under /project.
FROM deps AS project
COPY src/ /app/
RUN uv pip install --python /opt/venv/bin/python --no-deps --editable /app \
 && mkdir /project \
 && /opt/venv/bin/python -c "import os; from importlib.metadata import distribution; \
[print(os.path.normpath(f.locate())) for f in distribution('rental-pricing').files]" \
  | xargs cp --archive --parents --target-directory=/project

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 1035 rental && useradd --uid 1035 --gid rental --create-home rental \
 && mkdir /data && chown rental:rental /data
COPY --from=deps /opt/venv /opt/venv
COPY --from=project /project/ /
COPY --chown=rental:rental src/ /app/
ENV PATH=/opt/venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    RENTAL_DATA_DIR=/data \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
RUN rental --help >/dev/null
WORKDIR /app
USER rental
ENTRYPOINT ["rental"]
CMD ["--help"]
