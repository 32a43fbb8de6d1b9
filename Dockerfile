# dccd as a container: `docker build -t dccd .` then `docker run -p 8080:8080 -v dccd-data:/data dccd`
# (the embedded default config; mount a config and pass `--config /etc/dccd/config.yaml` to use yours).
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dccd ./dccd
COPY actors ./actors
COPY web ./web
COPY config ./config
RUN pip install --no-cache-dir . && rm -rf /src
ENV DCCD_DATA=/data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)" || exit 1
ENTRYPOINT ["dccd"]
CMD ["serve", "--host", "0.0.0.0"]
