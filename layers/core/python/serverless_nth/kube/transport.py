"""The official Kubernetes client's transport, imported without the package's ``__init__`` files.

``import kubernetes.client.rest`` first runs ``kubernetes/__init__.py``, which imports
``kubernetes.config`` (kubeconfig and exec-plugin machinery: yaml, requests, oauthlib), dynamic,
watch, stream, leaderelection and informer, and ``kubernetes/utils/__init__.py``, which imports
``create_from_yaml``: about 0.1 s of every cold start for code the functions never run (they get
the endpoint, CA and token from EKS, see aws/eks.py). Here the three packages are entered as
plain package objects (their ``__path__`` only, ``__init__`` not run) while the transport's
modules load, and everything entered or loaded under them is taken out of ``sys.modules`` again:
the classes kept here are the library's own code, unchanged, and a later ``import kubernetes``
in the same process (tests, tools) loads the whole package as usual, with its own copies. When
the package is already imported, its modules are used as they are.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator

_PACKAGES = ("kubernetes", "kubernetes.client", "kubernetes.utils")


@contextlib.contextmanager
def _packages_without_init(names: tuple[str, ...]) -> Iterator[None]:
    before = set(sys.modules)
    entered = False
    try:
        for name in names:
            if name in sys.modules:
                continue
            parent, _, _ = name.rpartition(".")
            path = sys.modules[parent].__path__ if parent else None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.submodule_search_locations is None:
                raise ModuleNotFoundError(f"no package {name}", name=name)
            sys.modules[name] = importlib.util.module_from_spec(spec)
            entered = True
        yield
    finally:
        if entered:  # the package objects and the modules loaded under them
            top = names[0]
            for name in set(sys.modules) - before:
                if name == top or name.startswith(top + "."):
                    del sys.modules[name]


with _packages_without_init(_PACKAGES):
    from kubernetes.client.configuration import Configuration
    from kubernetes.client.exceptions import ApiException
    from kubernetes.client.rest import RESTClientObject

__all__ = ["ApiException", "Configuration", "RESTClientObject"]
