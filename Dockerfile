# noderun: a NodeTool-compatible node-execution server.
# Build: docker build -t noderun .   Run: docker run -p 7777:7777 noderun
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY noderun ./noderun
RUN pip install --no-cache-dir --prefix=/install ".[postgres]"

FROM python:3.11-slim
# Unprivileged user; the embedded store lives in /data (mount a volume to keep it).
RUN useradd --system --create-home --uid 10001 noderun && mkdir /data && chown noderun /data
COPY --from=build /install /usr/local
USER noderun
WORKDIR /data
ENV NODERUN_HOST=0.0.0.0 \
    NODERUN_PORT=7777 \
    NODERUN_STORE=sqlite:////data/noderun.db \
    PYTHONUNBUFFERED=1
EXPOSE 7777
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:7777/health', timeout=2).status != 200)"]
CMD ["noderun", "serve", "--log-level", "info"]
