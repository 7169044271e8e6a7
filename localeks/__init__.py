"""A local EKS for tests, benchmarks and the demo, built from real parts.

etcd, kube-apiserver (RBAC, webhook token authentication), kube-controller-manager (disruption
controller) and kwok, built from pinned Go modules; moto's server for the AWS APIs; and a
token-review webhook that checks EKS tokens the way aws-iam-authenticator does.
This package is test support: nothing under ``layers/`` imports it.
"""
