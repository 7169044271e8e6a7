"""The naive import the brief compares against: boto3, the kubernetes client's typed APIs and
Powertools with its parser, as a handler written without care for cold start would import them."""

import time

t0, c0 = time.perf_counter(), time.process_time()
import boto3  # noqa: E402,F401
from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: E402,F401
from aws_lambda_powertools.utilities.parser import envelopes, parse  # noqa: E402,F401
from kubernetes import client, config  # noqa: E402,F401
from kubernetes.client import CoreV1Api, PolicyV1Api  # noqa: E402,F401

print(f'BENCH {{"import_s": {time.perf_counter() - t0}, "import_cpu_s": {time.process_time() - c0}}}')
