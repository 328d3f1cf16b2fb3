"""The StreamFlow online feature service (Sanic).

`python -m serving` runs it; `serving.app.create_app()` builds the application
for tests and for every worker process. This package module imports nothing on
purpose: `python -m serving` must configure Prometheus' multiprocess folder
before prometheus_client is first imported (see serving/metrics.py).
"""
