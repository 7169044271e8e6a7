"""Serverless node termination handler for EKS: the shared core of every function.

Layout by what the code does: ``events`` (EventBridge payloads -> one InterruptionEvent),
``policy`` (which event does what), ``aws`` (EC2 instance facts, EKS cluster data and token: the
only boto3 users), ``kube`` (node lookup, cordon, taint, drain: the only Kubernetes API users),
``service`` (the sequence), ``config`` and ``observability``.
"""
