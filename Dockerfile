# Slim, non-root image of the gateway. Build: docker build -t openrouter-anthropic .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home gateway
USER gateway
ENV OPENROUTER_ANTHROPIC_HOST=0.0.0.0 \
    OPENROUTER_ANTHROPIC_PORT=4000 \
    PYTHONUNBUFFERED=1
EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:4000/health', timeout=2).status == 200 else 1)"
# Listening on 0.0.0.0 needs client keys: set PROXY_API_KEYS (or mount a config file).
ENTRYPOINT ["openrouter-anthropic"]
CMD ["serve"]
