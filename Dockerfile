# Airflow 3.3 image with this provider installed, for every component of docker-compose.yaml
# (worker, triggerer, dag-processor and api-server all import it) and for the sandbox service.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION
# The sandbox's state directory (keys, connection JSON); the named volume inherits its owner.
USER root
RUN mkdir -p /opt/ibkr-sandbox && chown airflow:root /opt/ibkr-sandbox
USER airflow
COPY --chown=airflow:root pyproject.toml README.md /opt/provider/
COPY --chown=airflow:root ibkr_provider /opt/provider/ibkr_provider
# The sandbox is a distribution of its own (sandbox/), installed beside the provider.
COPY --chown=airflow:root sandbox /opt/sandbox
# Pin Airflow so pip cannot up- or downgrade the image's own install.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/provider[redis]" /opt/sandbox
