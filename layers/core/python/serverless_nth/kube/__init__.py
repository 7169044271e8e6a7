"""The Kubernetes side: node lookup, cordon, taint, drain. The only Kubernetes API users."""
