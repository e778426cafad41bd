# noderun: a NodeTool-compatible node-execution server.
# Build: docker build -t noderun .
# Run:   docker run -p 127.0.0.1:7777:7777 -e NODERUN_TOKENS=… -v noderun-data:/data noderun
FROM python:3.11-slim AS build
WORKDIR /src
# Dependencies first, pinned by constraints.txt (scripts/lock): this layer is rebuilt only
# when the pins change, not on every source change.
COPY constraints.txt ./
RUN pip install --no-cache-dir --prefix=/install -r constraints.txt
COPY pyproject.toml README.md ./
COPY noderun ./noderun
RUN pip install --no-cache-dir --prefix=/install --no-deps -c constraints.txt ".[postgres]"

FROM python:3.11-slim
# Unprivileged user; the embedded store lives in /data (a volume, so it outlives the container).
RUN useradd --system --create-home --uid 10001 noderun && mkdir /data && chown noderun /data
COPY --from=build /install /usr/local
USER noderun
WORKDIR /data
VOLUME /data
ENV NODERUN_HOST=0.0.0.0 \
    NODERUN_PORT=7777 \
    NODERUN_STORE=sqlite:////data/noderun.db \
    PYTHONUNBUFFERED=1
EXPOSE 7777
# SIGTERM drains (runs in flight finish, up to the drain timeout): give it time before SIGKILL.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:7777/readyz', timeout=2).status != 200)"]
CMD ["noderun", "serve", "--log-level", "info"]
