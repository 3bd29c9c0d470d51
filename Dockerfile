# The WMS (REST server, daemons, embedded MQS) as an image. Configure with environment variables (Docs/operations.md);
# in production set MONGODB_URI, AUTH_OPENID_URL, AUTH_AUDIENCE, EWMS_CLUSTERS and the BROKER_* / MQS_* settings.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    REST_HOST=0.0.0.0 REST_PORT=8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY wms ./wms
COPY mqs_client ./mqs_client
COPY tms ./tms
COPY pilot ./pilot
COPY ewms_client ./ewms_client
COPY ewms_settings ./ewms_settings
COPY ewms_wire ./ewms_wire
# not used by the WMS; the `ewms` command in the image imports it for its `dev` sub-commands
COPY ewms_dev ./ewms_dev
COPY Docs ./Docs
RUN pip install --no-cache-dir . && useradd --system --home-dir /var/lib/ewms --create-home ewms

ENV WMS_OPENAPI_PATH=/app/Docs/openapi.json
USER ewms
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v0/')"
CMD ["python", "-m", "wms"]
